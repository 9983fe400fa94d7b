"""Host presets: VideoGLaMM, UniPixel and GLUS, each at the smoke, mini and paper sizes.

- ``videoglamm``: dual encoder (CLIP spatial + a temporal video encoder), ``mlp2x_gelu`` adapters, Phi-3, one SAM2
  sparse token per ``[SEG]``, framewise decoding. The released SPARROW code is built on this host.
- ``unipixel``: Qwen2.5-VL (a single ViT with its patch merger as the V->L adapter), ``seg_head`` giving two 256-d
  SAM2 tokens per ``[SEG]`` from the pre-norm last layer, SAM2.1 B+ at 768 px with memory propagation from frame 0.
- ``glus``: LLaMA-class LLM with CLIP-224 tokens pooled 4:1 through a linear projector, 4 global context frames plus
  a 4-frame question window, SAM2-L with memory over the question frames.

Sizes:

- ``smoke``: a forward in well under a second (CI).
- ``mini``: trainable on 2 CPU cores in minutes: LLM hidden 128 with 2 layers, 64-px encoder frames, tiny SAM2 at
  128 px with 8 SAM frames per training sample (UniPixel 4: its memory propagation makes each SAM frame cost
  about twice a framewise one, and 4 keep ``make reproduce`` within 20 minutes; GLUS: 4 + 4). No pretrained SAM2
  exists offline: the tiny SAM2 is first pretrained on box prompts (:mod:`sparrow.train.sam_pretrain`) and the
  host stage fine-tunes its mask decoder as at paper size. The SPARROW stages keep SAM2 frozen as the released
  code does.
- ``paper``: the real component ids, loaded from local folders under ``weights_root`` (default
  ``$SPARROW_HOME/weights``): the folder names below are what the loader expects. Nothing is downloaded.

Differences from the hosts' own code, each a documented choice of the kit:

- VideoGLaMM's temporal encoder is InternVideo2-1B, which needs ``trust_remote_code`` (forbidden here); the paper
  preset takes a transformers VideoMAE-L folder instead (``videomae-large``, 16-frame chunks, tubelet 2), so its token
  counts differ from InternVideo2's 256 per frame.
- GLUS's base is LISA-7B (a LLaVA checkpoint); the preset expects its language model as a plain ``LlamaForCausalLM``
  folder (``lisa-7b-llama``). GLUS pools then projects (order unconfirmed) and asks one question per question frame;
  the kit asks once for the whole window and every question frame uses the same ``[SEG]``.
- UniPixel feeds video frame pairs to Qwen2.5-VL as temporal patches; the kit encodes every frame as an image
  (square resize, no dynamic resolution), and uses SPARROW's LoRA setting (r=8) rather than UniPixel's r=128.
  UniPixel's object-memory and visual-prompt modules are not part of SPARROW's method and are not built.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from sparrow.model.config import (
    HOSTS,
    AdapterSpec,
    LLMSpec,
    ModelConfig,
    ProposerSpec,
    SamSpec,
    TemporalSpec,
    VisionSpec,
)
from sparrow.profiles import check_profile

# Paper-size component folders, relative to weights_root.
PAPER_PATHS = {
    "videoglamm": {
        "llm": "Phi-3-mini-4k-instruct",
        "vision": "clip-vit-large-patch14-336",
        "temporal": "videomae-large",
        "sam_config": "configs/sam2/sam2_hiera_l.yaml",
        "sam_checkpoint": "sam2_hiera_large.pt",
    },
    "unipixel": {
        "llm": "Qwen2.5-VL-3B-Instruct",
        "sam_config": "configs/sam2.1/sam2.1_hiera_b+.yaml",
        "sam_checkpoint": "sam2.1_hiera_base_plus.pt",
    },
    "glus": {
        "llm": "lisa-7b-llama",
        "vision": "clip-vit-large-patch14",
        "sam_config": "configs/sam2/sam2_hiera_l.yaml",
        "sam_checkpoint": "sam2_hiera_large.pt",
    },
}


def preset(host: str, profile: str, **overrides: Any) -> ModelConfig:
    """The :class:`ModelConfig` of ``host`` at ``profile`` size, with top-level field overrides applied."""
    check_profile(profile)
    if host not in HOSTS:
        raise ValueError(f"unknown host {host!r}; choose one of {', '.join(HOSTS)}")
    base = {"videoglamm": _videoglamm, "unipixel": _unipixel, "glus": _glus}[host](profile)
    return dataclasses.replace(base, **overrides) if overrides else base


def _tiny_llm(kind: str, profile: str) -> LLMSpec:
    if profile == "smoke":
        return LLMSpec(kind=kind, hidden_size=32, num_layers=1, num_heads=4, num_kv_heads=2, intermediate_size=64,
                       model_max_length=1024)
    return LLMSpec(kind=kind, hidden_size=128, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=256,
                   model_max_length=1024)


def _tiny_sam(profile: str) -> SamSpec:
    return SamSpec(image_size=64 if profile == "smoke" else 128, tiny=True)


def _tiny_proposer(profile: str) -> ProposerSpec:
    if profile == "smoke":
        return ProposerSpec(d_model=32, num_queries=12, encoder_layers=1, decoder_layers=2, num_heads=2, ffn_dim=64,
                            topk=8)
    return ProposerSpec(d_model=64, num_queries=24, encoder_layers=1, decoder_layers=2, num_heads=4, ffn_dim=128,
                        topk=16)


# The tiny SAM2 starts from the kit's box-prompt pretraining (sparrow.train.sam_pretrain) instead of a released
# checkpoint, and the host stage fine-tunes its mask decoder, as at paper size.
_TINY_HOST: dict[str, Any] = dict(host_trainable_sam="mask_decoder")

PAPER_PROPOSER = ProposerSpec(d_model=256, num_queries=300, encoder_layers=6, decoder_layers=6, num_heads=8,
                              ffn_dim=1024, topk=100, image_size=448)


def _videoglamm(profile: str) -> ModelConfig:
    common = dict(host="videoglamm", profile=profile, propagation="framewise", chat_template="phi3",
                  adapter=AdapterSpec(image_projector="mlp2x_gelu", video_projector="mlp2x_gelu",
                                      context_pool_stride=2, video_pool_stride=2))
    if profile == "paper":
        paths = PAPER_PATHS["videoglamm"]
        return ModelConfig(
            **common,
            llm=LLMSpec(kind="phi3", path=paths["llm"], model_max_length=2048, dtype="bfloat16"),
            vision=VisionSpec(kind="clip", path=paths["vision"]),
            temporal=TemporalSpec(kind="videomae", path=paths["temporal"], chunk_size=16, tubelet_size=2),
            sam=SamSpec(config=paths["sam_config"], checkpoint=paths["sam_checkpoint"], image_size=None, tiny=False,
                        object_score_gating=True),
            proposer=PAPER_PROPOSER, num_frames=16, num_sam_frames=8, max_new_tokens=512, host_trainable_sam="mask_decoder",
        )
    size = 32 if profile == "smoke" else 64
    return ModelConfig(
        **common,
        llm=_tiny_llm("phi3", profile),
        vision=VisionSpec(kind="clip", image_size=size, patch_size=8, hidden_size=32 if profile == "smoke" else 64,
                          num_layers=2, num_heads=2,
                          intermediate_size=64 if profile == "smoke" else 128),
        temporal=TemporalSpec(kind="videomae", image_size=size, patch_size=16, chunk_size=4, tubelet_size=1,
                              hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64),
        sam=_tiny_sam(profile), proposer=_tiny_proposer(profile),
        num_frames=4 if profile == "smoke" else 8, num_sam_frames=2 if profile == "smoke" else 8,
        max_new_tokens=12, **_TINY_HOST,
    )


def _unipixel(profile: str) -> ModelConfig:
    common = dict(host="unipixel", profile=profile, propagation="memory_from_first", seg_tokens_per_target=2,
                  lv_projector="seg_head", hidden_state="last_prenorm", chat_template="qwen_chatml",
                  eval_prompt="Please segment the {phrase} in this video.",
                  adapter=AdapterSpec(image_projector="none", video_projector=None, context_pool_stride=1))
    if profile == "paper":
        paths = PAPER_PATHS["unipixel"]
        return ModelConfig(
            **common,
            llm=LLMSpec(kind="qwen2_5_vl", path=paths["llm"], model_max_length=4096, dtype="bfloat16"),
            vision=VisionSpec(kind="qwen2_5_vl", image_size=336, patch_size=14),
            sam=SamSpec(config=paths["sam_config"], checkpoint=paths["sam_checkpoint"], image_size=768, tiny=False,
                        object_score_gating=True),
            proposer=PAPER_PROPOSER, num_frames=16, num_sam_frames=8, max_new_tokens=512, host_trainable_sam="mask_decoder",
        )
    size = 32 if profile == "smoke" else 64
    return ModelConfig(
        **common,
        llm=_tiny_llm("qwen2_5_vl", profile),
        vision=VisionSpec(kind="qwen2_5_vl", image_size=size, patch_size=8, hidden_size=32, num_layers=1,
                          num_heads=2, intermediate_size=64),
        sam=_tiny_sam(profile), proposer=_tiny_proposer(profile),
        num_frames=4 if profile == "smoke" else 8, num_sam_frames=2 if profile == "smoke" else 4,
        max_new_tokens=12, **_TINY_HOST,
    )


def _glus(profile: str) -> ModelConfig:
    common = dict(host="glus", profile=profile, propagation="memory_every_frame", chat_template="llava_v1",
                  eval_prompt="Can you segment {phrase} in this video?", llm_sees_sam_frames=True,
                  adapter=AdapterSpec(image_projector="linear", video_projector=None, context_pool_stride=1,
                                      token_pool_1d=4, pool_before_projection=True))
    if profile == "paper":
        paths = PAPER_PATHS["glus"]
        return ModelConfig(
            **common,
            llm=LLMSpec(kind="llama", path=paths["llm"], model_max_length=512, dtype="bfloat16"),
            vision=VisionSpec(kind="clip", path=paths["vision"]),
            sam=SamSpec(config=paths["sam_config"], checkpoint=paths["sam_checkpoint"], image_size=None, tiny=False,
                        object_score_gating=True),
            proposer=PAPER_PROPOSER, num_frames=4, num_sam_frames=4, max_new_tokens=512, host_trainable_sam="mask_decoder",
        )
    size = 32 if profile == "smoke" else 64
    return ModelConfig(
        **common,
        llm=_tiny_llm("llama", profile),
        vision=VisionSpec(kind="clip", image_size=size, patch_size=8, hidden_size=32 if profile == "smoke" else 64,
                          num_layers=2, num_heads=2,
                          intermediate_size=64 if profile == "smoke" else 128),
        sam=_tiny_sam(profile), proposer=_tiny_proposer(profile),
        num_frames=2 if profile == "smoke" else 4, num_sam_frames=2 if profile == "smoke" else 4,
        max_new_tokens=12, **_TINY_HOST,
    )
