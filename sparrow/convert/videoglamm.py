"""Key maps of the VideoGLaMM-host releases: SPARROW (``sparrow-finetune``, ``sparrow-finetune-davis17``) and the
VideoGLaMM checkpoint. Both are Phi-3 ``VideoGPT+`` folders written by ``save_pretrained`` after a LoRA merge.

One section per component, each with the release prefix and the kit prefix (docs/released-weights.md §2):

======================  ==============================  =================================  ==========
component               release                         kit                                input
======================  ==============================  =================================  ==========
Phi-3 LLM               ``model.{embed_tokens,layers,   ``llm.model.model.*``,             release
                        norm}``, ``lm_head``            ``llm.model.lm_head``
video adapter           ``model.mm_projector.{0,2}``    ``video_adapter.proj.{0,2}``       release
image adapter           ``model.image_mm_projector``    ``image_adapter.proj``             release
L->V projector          ``model.text_hidden_fcs.0``     ``lv_projector.net``               release
SAM2                    ``model.visual_model``          ``pixel_decoder.sam``              release
ProposalSelector        ``model.proposal_selector``     ``selector``                       release
ROI helper              ``model.roi_helper``            ``roi_helper``                     release
gamma                   ``model.roi_fusion_gamma``      ``roi_fusion_gamma``               release
CLIP spatial tower      ``vision_model``                ``spatial.clip``                   ``--clip``
temporal encoder        (InternVideo2 ``.pt``)          ``temporal``                       ``--internvideo2``
proposer                (``checkpoint-*`` folder)       ``proposer``                       ``--proposer``
======================  ==============================  =================================  ==========

The temporal encoder and the proposer sections are the maps of the kit modules that implement the released
architectures (:func:`sparrow.model.internvideo2.release_key_map`, :func:`sparrow.model.deformable_detr.release_key_map`,
the same maps their own loaders use), placed under the kit prefix; without their input a component keeps the kit's
initialisation, named in the report.
"""

from __future__ import annotations

import re

from sparrow.model import deformable_detr, internvideo2
from sparrow.model.state_report import Allowance, KeyMap, Rule, Section

RELEASES: tuple[str, ...] = ("sparrow", "videoglamm")

# The memory encoder's layer scale: VideoGLaMM's bundled SAM2 names it `weight` (so that transformers' load-time
# rename of `gamma` keys cannot drop it); sam2 and the kit name it `gamma`. Accept both spellings.
_SAM_RULES = (
    Rule(r"memory_encoder\.fuser\.layers\.(\d+)\.(?:weight|gamma)", r"memory_encoder.fuser.layers.\1.gamma"),
    Rule(r"(.+)", r"\1"),
)

_LORA_REASON = "the kit's LoRA factors: lora_B is zero, so they add nothing (the release merged its LoRA)"

# component: (input, kit prefix of the module the component's own key map loads)
COMPONENTS: dict[str, tuple[str, str]] = {
    "temporal": ("internvideo2", "temporal.model."),
    "proposer": ("proposer", "proposer."),
}


def component_keymap(component: str, temporal_config: internvideo2.InternVideo2Config | None = None) -> KeyMap:
    """The key map of ``component`` placed in the converted model (``temporal_config``: the encoder's sizes)."""
    source, prefix = COMPONENTS[component]
    if component == "temporal":
        if temporal_config is None:
            raise ValueError("the temporal encoder's key map needs its InternVideo2Config")
        return internvideo2.release_key_map(temporal_config).under(prefix, source)
    return deformable_detr.release_key_map().under(prefix, source)


def _host_sections() -> tuple[Section, ...]:
    return (
        Section(
            "Phi-3 LLM",
            "release",
            "",
            "",
            (
                # the vocabulary rows: the kit may add [BOX] (VideoGLaMM has none)
                Rule(r"model\.embed_tokens\.weight", r"llm.model.model.embed_tokens.weight", "vocab"),
                Rule(r"lm_head\.weight", r"llm.model.lm_head.weight", "vocab"),
                Rule(r"model\.((?:layers|norm)\..+)", r"llm.model.model.\1"),
            ),
            lora_aware=True,
        ),
        Section(
            "video adapter (mm_projector)", "release", "model.mm_projector.", "video_adapter.proj.", lora_aware=True
        ),
        Section(
            "image adapter (image_mm_projector)",
            "release",
            "model.image_mm_projector.",
            "image_adapter.proj.",
            lora_aware=True,
        ),
        Section(
            "L->V projector (text_hidden_fcs)",
            "release",
            "model.text_hidden_fcs.0.",
            "lv_projector.net.",
            lora_aware=True,
        ),
        Section("SAM2", "release", "model.visual_model.", "pixel_decoder.sam.", _SAM_RULES),
        Section("CLIP spatial tower", "clip", "vision_model.", "spatial.clip."),
    )


def _box_sections() -> tuple[Section, ...]:
    return (
        Section("ProposalSelector", "release", "model.proposal_selector.", "selector."),
        Section("ROI helper", "release", "model.roi_helper.", "roi_helper."),
        Section("roi_fusion_gamma", "release", "model.", "", (Rule(r"(roi_fusion_gamma)", r"\1", "gamma"),)),
    )


_COMMON_UNEXPECTED = (
    Allowance(
        r"(?:text_model\..+|text_projection\..+|visual_projection\..+|logit_scale)",
        "the CLIP folder's text tower and projections (the spatial encoder uses the vision tower only)",
        "clip",
    ),
    Allowance(
        r"model\.vision_tower\..+",
        "VideoGLaMM's export keeps its InternVideo2 copy; the encoder is read from the InternVideo2 file",
    ),
    Allowance(
        r"model\.image_vision_tower\..+", "a CLIP copy in the export; the spatial tower is read from the CLIP folder"
    ),
)


def keymap(release: str, temporal_config: internvideo2.InternVideo2Config | None, with_proposer: bool) -> KeyMap:
    """The key map of ``release`` (``sparrow`` or ``videoglamm``); ``temporal_config``: the InternVideo2 the
    ``--internvideo2`` file fills (None: not given); ``with_proposer``: whether ``--proposer`` is given."""
    if release not in RELEASES:
        raise ValueError(f"unknown release {release!r}; choose one of {', '.join(RELEASES)}")
    sections = list(_host_sections())
    unexpected = list(_COMMON_UNEXPECTED)
    missing = [Allowance(r".+\.lora_[AB]\.default\.weight", _LORA_REASON, "kit")]
    given = {"temporal": temporal_config is not None, "proposer": with_proposer and release == "sparrow"}
    for component, present in given.items():
        source, prefix = COMPONENTS[component]
        if present:
            part = component_keymap(component, temporal_config)
            sections.extend(part.sections)
            unexpected.extend(part.allow_unexpected)
            missing.extend(part.allow_missing)
        elif component == "temporal" or release == "sparrow":
            missing.append(
                Allowance(
                    re.escape(prefix.split(".")[0] + ".") + ".+",
                    f"{component}: kept at the kit's initialisation (no {source} input converted)",
                    "kit",
                )
            )
    if release == "sparrow":
        sections.extend(_box_sections())
    return KeyMap(f"{release}->kit", tuple(sections), tuple(unexpected), tuple(missing))
