"""Host presets: VideoGLaMM, UniPixel and GLUS, each at the smoke, mini and paper sizes.

- ``videoglamm``: dual encoder (CLIP spatial + a temporal video encoder), ``mlp2x_gelu`` adapters, Phi-3, one SAM2
  sparse token per ``[SEG]``, framewise decoding. The released SPARROW code is built on this host.
- ``unipixel``: Qwen2.5-VL (a single ViT with its patch merger as the V->L adapter), ``seg_head`` giving two 256-d
  SAM2 tokens per ``[SEG]`` from the pre-norm last layer, SAM2.1 B+ at 768 px with memory propagation from frame 0.
- ``glus``: LLaMA-class LLM with CLIP-224 tokens pooled 4:1 through a linear projector, 4 global context frames plus
  a 4-frame question window, SAM2-L with memory over the question frames.

Sizes are the profile's (``model`` section of :mod:`sparrow.profiles`):

- ``smoke``: a forward in well under a second (CI).
- ``mini``: trainable on 2 CPU cores in minutes: LLM hidden 128 with 2 layers, 64-px encoder frames, tiny SAM2 at
  128 px. No pretrained SAM2 exists offline: the tiny SAM2 is first pretrained on box prompts
  (:mod:`sparrow.train.sam_pretrain`) and the host stage fine-tunes its mask decoder as at paper size. The
  SPARROW stages keep SAM2 frozen as the released code does.
- ``paper``: the real components, loaded from local folders; the preset holds their names (e.g.
  ``Phi-3-mini-4k-instruct``, ``sam2_hiera_large.pt``) and :func:`sparrow.paths.component_path` finds them when the
  model is built: an absolute path as given, else the entry of the weights paths file, else
  ``$SPARROW_HOME/weights/<name>``. Nothing is downloaded.

Differences from the hosts' own code, each a documented choice of the kit:

- VideoGLaMM's paper preset runs the released architecture natively: InternVideo2-1B as the temporal encoder
  (:mod:`sparrow.model.internvideo2`, read from the released ``.pt``) and the two-stage Deformable-DETR proposer with
  its own SAM2 Hiera-L copy (:mod:`sparrow.model.deformable_detr`; its backbone seeded from ``sam2_hiera_large.pt``
  unless ``ProposerSpec.path`` names a released ``checkpoint-*`` folder). The proposer section is shared by the three
  hosts, so every paper host gets it. The tiny smoke/mini presets keep a VideoMAE temporal encoder and the kit's
  small DETR proposer, which train in minutes on a CPU. Its prompt is VideoGPT+'s ``phi3_instruct`` with the
  system turn the released code writes (``chat_template="phi3_instruct"``); the tiny presets keep ``phi3``
  without it.
- GLUS's base is LISA-7B (a LLaVA checkpoint); the preset expects its language model as a plain ``LlamaForCausalLM``
  folder (``lisa-7b-llama``). GLUS pools then projects (order unconfirmed) and asks one question per question frame;
  the kit asks once for the whole window and every question frame uses the same ``[SEG]``.
- UniPixel feeds video frame pairs to Qwen2.5-VL as temporal patches; the kit encodes every frame as an image
  (square resize, no dynamic resolution), and uses SPARROW's LoRA setting (r=8) rather than UniPixel's r=128.
  UniPixel's object-memory and visual-prompt modules are not part of SPARROW's method and are not built. At paper
  size its ``seg_head`` norm is Qwen2's RMSNorm (eps 1e-6 in float32), as in the release.
- At paper size each of UniPixel and GLUS runs inference with its own protocol (``ModelConfig.protocol``,
  :mod:`sparrow.model.host_protocol`): UniPixel's frame and query rules, GLUS's middle context clip.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from sparrow.model.config import (
    HOSTS,
    AdapterSpec,
    GroundingSpec,
    LLMSpec,
    ModelConfig,
    ProposerSpec,
    SamSpec,
    TemporalSpec,
    VisionSpec,
)
from sparrow.profiles import HostModelSection, get_profile

# What each host is at every size: its components' kinds and how it wires them.
_KINDS = {"videoglamm": ("phi3", "clip"), "unipixel": ("qwen2_5_vl", "qwen2_5_vl"), "glus": ("llama", "clip")}
_WIRING: dict[str, dict[str, Any]] = {
    "videoglamm": dict(
        propagation="framewise",
        chat_template="phi3",
        adapter=AdapterSpec(
            image_projector="mlp2x_gelu", video_projector="mlp2x_gelu", context_pool_stride=2, video_pool_stride=2
        ),
    ),
    "unipixel": dict(
        propagation="memory_from_first",
        seg_tokens_per_target=2,
        lv_projector="seg_head",
        hidden_state="last_prenorm",
        chat_template="qwen_chatml",
        eval_prompt="Please segment the {phrase} in this video.",
        adapter=AdapterSpec(image_projector="none", video_projector=None, context_pool_stride=1),
    ),
    "glus": dict(
        propagation="memory_every_frame",
        chat_template="llava_v1",
        eval_prompt="Can you segment {phrase} in this video?",
        llm_sees_sam_frames=True,
        adapter=AdapterSpec(
            image_projector="linear",
            video_projector=None,
            context_pool_stride=1,
            token_pool_1d=4,
            pool_before_projection=True,
        ),
    ),
}

# Paper-size departures from the wiring above, where the released code's behaviour is the paper's (the tiny presets
# keep torch's RMSNorm default, the kit's inference protocol and the wiring their recorded numbers were made with).
_PAPER_WIRING: dict[str, dict[str, Any]] = {
    "videoglamm": dict(chat_template="phi3_instruct", frame_chain="released"),
    "unipixel": dict(seg_head_norm_eps=1e-6, protocol="unipixel"),
    "glus": dict(protocol="glus"),
}
# the released proposal boxes stay unclamped up to the box prior filter (the proposer section is every host's)
_PAPER_SELECTOR: dict[str, Any] = dict(clamp_boxes=False, box_prior_prompt="corners")


def preset(host: str, profile: str, **overrides: Any) -> ModelConfig:
    """The :class:`ModelConfig` of ``host`` at ``profile`` size, with top-level field overrides applied."""
    section = get_profile(profile).model
    if host not in HOSTS:
        raise ValueError(f"unknown host {host!r}; choose one of {', '.join(HOSTS)}")
    sizes = section.hosts[host]
    llm_kind, vision_kind = _KINDS[host]
    base = ModelConfig(
        host=host,
        profile=profile,
        **{**_WIRING[host], **(_PAPER_WIRING.get(host, {}) if profile == "paper" else {})},
        llm=LLMSpec(kind=llm_kind, **sizes.llm),
        vision=VisionSpec(kind=vision_kind, **sizes.vision),
        temporal=None if sizes.temporal is None else TemporalSpec(**{"kind": "videomae", **sizes.temporal}),
        sam=SamSpec(**sizes.sam),
        proposer=ProposerSpec(**section.proposer),
        num_frames=sizes.num_frames,
        num_sam_frames=sizes.num_sam_frames,
        max_new_tokens=section.max_new_tokens,
        host_trainable_sam=section.host_trainable_sam,
        grounding=GroundingSpec(**section.grounding) if section.location_channel else None,
    )
    if profile == "paper":
        base = dataclasses.replace(base, selector=dataclasses.replace(base.selector, **_PAPER_SELECTOR))
        base = dataclasses.replace(base, **_PAPER_WIRING.get(host, {}))
    return dataclasses.replace(base, **overrides) if overrides else base


def paper_components(host: str) -> dict[str, str]:
    """The component names of ``host``'s paper preset by role (``llm``, ``vision``, ``temporal``, ``sam_config``,
    ``sam_checkpoint``, ``proposer_backbone``: the sam2 checkpoint seeding the proposer's own SAM2 copy; roles the
    host lacks are left out). Every name but ``sam_config`` (a config inside the sam2 package) is a file or folder of
    the default layout under the weights root."""
    section = get_profile("paper").model
    sizes: HostModelSection = section.hosts[host]
    found = {
        "llm": sizes.llm.get("path"),
        "vision": sizes.vision.get("path"),
        "temporal": (sizes.temporal or {}).get("path"),
        "sam_config": sizes.sam.get("config"),
        "sam_checkpoint": sizes.sam.get("checkpoint"),
        "proposer_backbone": section.proposer.get("backbone_checkpoint"),
    }
    return {role: name for role, name in found.items() if name is not None}
