"""The model's configuration: one frozen dataclass per figure box, gathered in :class:`ModelConfig`.

Every size that depends on the profile is in :mod:`sparrow.profiles`, assembled per host by
:mod:`sparrow.model.presets` (``ModelConfig.for_preset(host, profile)``); this module only defines the fields,
their JSON round trip and the resolution of local component paths.

Component paths (``path`` / ``checkpoint`` fields) are either absolute, or component names found by
:func:`sparrow.paths.component_path` (the weights paths file, then ``<weights_root>/<name>``, default root
``$SPARROW_HOME/weights``). A spec whose path is ``None`` is built with random weights from its size
fields; a spec with a path is loaded from that local directory or file (offline, never downloading). When a path is
given, sizes are read from the component itself and the size fields are ignored.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from sparrow.paths import component_path
from sparrow.profiles import check_profile

HOSTS: tuple[str, ...] = ("videoglamm", "unipixel", "glus")
MODEL_STAGES: tuple[str, ...] = ("host", "proposer", "stage1", "stage2")
PROPAGATION_MODES: tuple[str, ...] = ("framewise", "memory_from_first", "memory_every_frame", "video_branch")
INFERENCE_PROTOCOLS: tuple[str, ...] = ("kit", "unipixel", "unipixel-native", "glus")  # sparrow.model.host_protocol
DECODING_MODES: tuple[str, ...] = ("greedy", "sample")
FRAME_CHAINS: tuple[str, ...] = ("kit", "released")  # sparrow.model.frames | sparrow.model.release_frames
# mixed: the LLM side in llm.dtype, SAM2 and the box modules float32 (the kit's); float16 / bfloat16: every module in
# that dtype and inference under autocast to it (the released evaluation's --precision fp16 / bf16)
PRECISIONS: tuple[str, ...] = ("mixed", "float16", "bfloat16")
CONFIG_FORMAT = "sparrow-model/1"


@dataclass(frozen=True)
class LLMSpec:
    """The causal LM (any transformers causal LM; Qwen2.5-VL through its conditional-generation class)."""

    kind: str = "qwen2"  # phi3 | llama | qwen2 | qwen2_5_vl: which transformers class a random tiny model uses
    path: str | None = None
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 128
    max_position_embeddings: int = 4096
    model_max_length: int = 2048
    dtype: str = "float32"
    extra_words: tuple[str, ...] = ()  # added to the offline word-level vocabulary of random tiny models


@dataclass(frozen=True)
class VisionSpec:
    """The spatial encoder: CLIP vision tower, or Qwen2.5-VL's own ViT + merger (``kind="qwen2_5_vl"``)."""

    kind: str = "clip"
    path: str | None = None
    image_size: int = 32
    patch_size: int = 8
    hidden_size: int = 32
    num_layers: int = 1
    num_heads: int = 2
    intermediate_size: int = 64
    select_layer: int = -2  # CLIP hidden state used (VideoGPT+/LLaVA: the penultimate layer)


@dataclass(frozen=True)
class TemporalSpec:
    """The temporal encoder (VideoGLaMM host only), run on chunks of ``chunk_size`` frames.

    ``kind``: ``videomae`` (a transformers folder; sizes read from it) or ``internvideo2`` (the released ``.pt``,
    which holds no configuration: the size fields describe it and loading checks every shape)."""

    kind: str = "videomae"
    path: str | None = None
    image_size: int = 32
    patch_size: int = 16
    chunk_size: int = 4
    tubelet_size: int = 1
    hidden_size: int = 32
    num_layers: int = 1
    num_heads: int = 2
    intermediate_size: int = 64


@dataclass(frozen=True)
class AdapterSpec:
    """V->L adapters and token pooling."""

    image_projector: str = "mlp2x_gelu"  # context frames, images and TSF crops: mlp2x_gelu | linear | none
    video_projector: str | None = "mlp2x_gelu"  # temporal-encoder tokens (VideoGLaMM mm_projector)
    context_pool_stride: int = 2  # adaptive average pool of the patch grid, G x G -> G/s x G/s (VideoGLaMM 24->12)
    video_pool_stride: int = 2  # temporal tokens, 16x16 -> 8x8 in VideoGLaMM
    token_pool_1d: int = 1  # GLUS: AvgPool1d over the patch sequence (k=4: 256 -> 64 tokens)
    pool_before_projection: bool = False  # VideoGLaMM projects then pools; GLUS pools then projects


@dataclass(frozen=True)
class SamSpec:
    """The SAM2 pixel decoder, built by ``sam2.build_sam.build_sam2`` from a hydra config."""

    config: str = "configs/sam2.1/sam2.1_hiera_t.yaml"  # packaged config name, or a local .yaml path
    checkpoint: str | None = None  # sam2's own format: torch.save({"model": state_dict})
    image_size: int | None = 64  # None keeps the config's size; tiny=True needs a value
    tiny: bool = True  # apply the tiny hydra overrides of docs/runtime.md §5.1
    extra_overrides: tuple[str, ...] = ()
    object_score_gating: bool = False  # memory modes at inference: SAM2's "no object" gating of the logits


@dataclass(frozen=True)
class ProposerSpec:
    """The class-agnostic proposer on frame 0.

    ``kind``: ``detr`` (the kit's small DETR head on the pixel decoder's SAM2 features) or ``deformable_detr`` (the
    released two-stage Deformable-DETR with its own frozen SAM2 image-encoder copy, ``backbone``)."""

    kind: str = "detr"
    path: str | None = None  # a save_pretrained folder, or (deformable_detr) a released checkpoint-* folder
    d_model: int = 32
    num_queries: int = 16
    encoder_layers: int = 1
    decoder_layers: int = 2
    num_heads: int = 2
    ffn_dim: int = 64
    topk: int = 8
    score_power: tuple[float, float] = (0.3, 0.7)  # coco^0.3 * sa1b^0.7
    image_size: int | None = None  # None: reuse the pixel decoder's frame-0 features; 448 in the released code
    cost_class: float = 2.0
    cost_l1: float = 5.0
    cost_giou: float = 2.0
    loss_class: float = 2.0
    loss_l1: float = 5.0
    loss_giou: float = 2.0
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    num_points: int = 4  # deformable_detr: sampling points per head
    backbone: str = "configs/sam2/sam2_hiera_l.yaml"  # deformable_detr: the sam2 config of its image encoder
    backbone_checkpoint: str | None = None  # deformable_detr without path: sam2 checkpoint seeding the backbone
    backbone_tiny: bool = False  # deformable_detr: the tiny Hiera of docs/runtime.md §5.1 (tests)


@dataclass(frozen=True)
class SelectorSpec:
    """ProposalSelector, ROI helper, box selection and the box prior filter."""

    hidden_dim: int | None = None  # None: min(seg_dim, prop_dim)
    roi_helper: bool = True
    roi_hidden_dim: int | None = None  # None: the SAM2 prompt dimension (256 at paper size)
    roi_size: int = 7
    roi_fusion_init: float = 0.1
    score_threshold: float = 0.4
    max_selected_per_token: int = 16
    proposal_iou_threshold: float = 0.3
    box_regression: bool = False
    box_prior_filter_train: bool = False
    box_prior_filter_test: bool = True
    box_prior_min_score: float = 0.35
    box_prior_max_keep: int = 1  # evaluation scripts: 1; chat.py and the model default: 4
    # proposal boxes clamped to [0, 1] before the ROI helper and the SAM2 box prompts; the released code clamps
    # them only inside the box prior filter (False at paper size)
    clamp_boxes: bool = True
    # the box prior filter's SAM2 prompt and scoring grid: box (a box prompt, masks at the frame size) | corners
    # (the released form: corner points labelled 2/3 plus SAM2's padding point, masks scored at 4x the prompt grid)
    box_prior_prompt: str = "box"


@dataclass(frozen=True)
class LoraSpec:
    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    llm_targets: tuple[str, ...] = ("q_proj", "v_proj")  # substring match, as the released code: hits Phi-3's qkv_proj
    exclude: tuple[str, ...] = ("visual", "vision_tower")


@dataclass(frozen=True)
class LossWeights:
    ce: float = 1.0
    bce: float = 2.0
    dice: float = 0.5
    prop: float = 1.0
    box: float = 0.01


@dataclass(frozen=True)
class GroundingSpec:
    """The location channel's dense grounding (:mod:`sparrow.model.dense_grounding`): sizes, the threshold of its
    location boxes, and its word vocabulary."""

    input_size: int = 64  # frames are resized to this before the encoder; cells are input_size / 4 per side
    dim: int = 48
    max_words: int = 24
    motion_offsets: tuple[int, ...] = (1, 2, 4)  # frame offsets of the motion channels (first one in colour)
    threshold: float = 0.5  # a cell whose grounding probability exceeds it is part of a location box
    max_boxes: int = 4  # location boxes per frame at most (the largest regions)
    dense_prompt: bool = False  # the grounding's logits also go to SAM2 as its dense (mask) prompt
    vocabulary: tuple[str, ...] = ()  # the words of the curated texts (dense_grounding.grounding_vocabulary)


def _nested(cls):
    return field(default_factory=cls)


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to build a :class:`sparrow.model.SparrowModel`; see ``for_preset``."""

    host: str = "videoglamm"
    profile: str = "smoke"
    # switches (every row of the paper's main table and ablation)
    tsf: bool = True  # TSF tokens in stage-1 training
    box: bool = True  # the dual [BOX] [SEG] prompt with proposer guidance (stage 2 and inference)
    tsf_at_test: bool = False  # TSF tokens at inference (released scripts: off)
    # components
    llm: LLMSpec = _nested(LLMSpec)
    vision: VisionSpec = _nested(VisionSpec)
    temporal: TemporalSpec | None = None
    adapter: AdapterSpec = _nested(AdapterSpec)
    sam: SamSpec = _nested(SamSpec)
    proposer: ProposerSpec = _nested(ProposerSpec)
    selector: SelectorSpec = _nested(SelectorSpec)
    lora: LoraSpec = _nested(LoraSpec)
    losses: LossWeights = _nested(LossWeights)
    # host wiring
    num_frames: int = 4  # encoder frames (VideoGLaMM context + video frames; UniPixel frames)
    num_sam_frames: int = 2  # SAM2 frames per training sample (GLUS: the question window)
    llm_sees_sam_frames: bool = False  # GLUS: the LLM sees the global frames, then the question (SAM) frames
    propagation: str = "framewise"
    seg_tokens_per_target: int = 1  # UniPixel: 2 SAM sparse tokens per [SEG]
    lv_projector: str = "text_hidden_fcs"  # text_hidden_fcs | seg_head (UniPixel)
    seg_head_norm_eps: float | None = None  # seg_head's RMSNorm: None = torch's default; UniPixel: 1e-6 in float32
    hidden_state: str = "last"  # last (after the final norm) | last_prenorm (UniPixel)
    seg_hidden_at: str = "preceding"  # LISA convention: the state that predicts [SEG]; "token": the [SEG] position
    chat_template: str = "phi3"  # phi3 | phi3_instruct (with the released system turn) | llava_v1 | qwen_chatml
    eval_prompt: str = "What is {phrase} in this video? Please respond with segmentation masks."
    # inference frame sampling and query wording: kit | unipixel | unipixel-native | glus (host_protocol.py)
    protocol: str = "kit"
    # inference frame resizing: kit (one float resize) | released (VideoGLaMM's uint8 PIL/cv2 chains, release_frames.py)
    frame_chain: str = "kit"
    # TSF
    tsf_k: int = 4
    tsf_kmeans_iters: int = 8
    tsf_placeholders: int | None = None  # None: num_frames (released: NUM_FRAMES for video prompts)
    # limits
    max_seg_tokens: int = 4
    visual_token_reserve: int = 255
    max_new_tokens: int = 32
    # answer decoding at inference: greedy (the kit's default, what its tables report) | sample (the released
    # evaluation's top-k 50 sampling at temperature 1, seeded here with decoding_seed so runs repeat)
    decoding: str = "greedy"
    decoding_seed: int = 0
    # module dtypes at inference (PRECISIONS): mixed (the kit's) | float16 (the released default) | bfloat16
    precision: str = "mixed"
    # host-stage trainables (VideoGLaMM recipe: LoRA + lm_head + embed_tokens + text_hidden_fcs + mask decoder)
    host_trainable_sam: str = "mask_decoder"  # none | mask_decoder | all
    host_train_adapters: bool = True
    weights_root: str | None = None
    # the location channel (docs/design.md §14): dense grounding of the text -> a box prompt per frame; None: off
    grounding: GroundingSpec | None = None

    def __post_init__(self) -> None:
        check_profile(self.profile)
        if self.host not in HOSTS:
            raise ValueError(f"unknown host {self.host!r}; choose one of {', '.join(HOSTS)}")
        if self.propagation not in PROPAGATION_MODES:
            raise ValueError(f"unknown propagation {self.propagation!r}; choose one of {', '.join(PROPAGATION_MODES)}")
        if self.protocol not in INFERENCE_PROTOCOLS:
            raise ValueError(f"unknown protocol {self.protocol!r}; choose one of {', '.join(INFERENCE_PROTOCOLS)}")
        if self.lv_projector not in ("text_hidden_fcs", "seg_head"):
            raise ValueError(f"unknown lv_projector {self.lv_projector!r}")
        if self.hidden_state not in ("last", "last_prenorm"):
            raise ValueError(f"unknown hidden_state {self.hidden_state!r}")
        if self.seg_hidden_at not in ("preceding", "token"):
            raise ValueError(f"unknown seg_hidden_at {self.seg_hidden_at!r}")
        if self.selector.box_prior_prompt not in ("box", "corners"):
            raise ValueError(f"unknown box_prior_prompt {self.selector.box_prior_prompt!r}; choose box or corners")
        if self.frame_chain not in FRAME_CHAINS:
            raise ValueError(f"unknown frame_chain {self.frame_chain!r}; choose one of {', '.join(FRAME_CHAINS)}")
        if self.decoding not in DECODING_MODES:
            raise ValueError(f"unknown decoding {self.decoding!r}; choose one of {', '.join(DECODING_MODES)}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; choose one of {', '.join(PRECISIONS)}")
        if self.host_trainable_sam not in ("none", "mask_decoder", "all"):
            raise ValueError(f"unknown host_trainable_sam {self.host_trainable_sam!r}")
        if self.sam.tiny and self.sam.image_size is None:
            raise ValueError("SamSpec(tiny=True) needs an image_size")
        if self.num_sam_frames < 1 or self.num_frames < 1:
            raise ValueError("num_frames and num_sam_frames must be >= 1")
        if self.temporal is not None and self.num_frames % self.temporal.chunk_size:
            raise ValueError(
                f"num_frames={self.num_frames} is not a multiple of the temporal chunk {self.temporal.chunk_size}"
            )

    # -- construction ------------------------------------------------------------------------------------------
    @classmethod
    def for_preset(cls, host: str, profile: str, **overrides: Any) -> ModelConfig:
        """The preset of ``host`` at ``profile`` size; keyword overrides replace top-level fields."""
        from sparrow.model.presets import preset

        return preset(host, profile, **overrides)

    @classmethod
    def for_profile(cls, profile: str, host: str = "videoglamm", **overrides: Any) -> ModelConfig:
        return cls.for_preset(host, profile, **overrides)

    def replace(self, **changes: Any) -> ModelConfig:
        return dataclasses.replace(self, **changes)

    # -- derived -----------------------------------------------------------------------------------------------
    @property
    def num_tsf_placeholders(self) -> int:
        return self.num_frames if self.tsf_placeholders is None else self.tsf_placeholders

    def resolve(self, path: str | None) -> Path | None:
        """Where a component is (:func:`sparrow.paths.component_path`, with ``weights_root`` as an explicit root);
        a component found nowhere raises FileNotFoundError."""
        if path is None:
            return None
        return component_path(path, self.weights_root)

    # -- JSON --------------------------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        out = {"format": CONFIG_FORMAT, **dataclasses.asdict(self)}
        if out["grounding"] is None:
            del out["grounding"]  # configs without the location channel read as before it existed
        if out["precision"] == "mixed":
            del out["precision"]  # the kit's precision: configs (and their fingerprints) read as before the switch
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any], source: str = "config") -> ModelConfig:
        data = dict(data)
        fmt = data.pop("format", None)
        if fmt != CONFIG_FORMAT:
            raise ValueError(f"{source}: unsupported model config format {fmt!r} (expected {CONFIG_FORMAT!r})")
        return _build(cls, data, source)

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2)


def _build(cls, data: Any, source: str, where: str = ""):
    """``cls`` from its JSON object, every field checked against the dataclass's own type hints (the only
    statement of what a field holds): a wrong type raises ValueError naming ``source``, the field and the type."""
    if not isinstance(data, dict):
        raise ValueError(f"{source}: {where or cls.__name__} must be a JSON object, got {_shown(data)}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{source}: unknown {cls.__name__} fields: {', '.join(unknown)}")
    kwargs = {
        f.name: _convert(hints[f.name], data[f.name], source, f"{where}.{f.name}" if where else f.name)
        for f in fields(cls)
        if f.name in data
    }
    return cls(**kwargs)


def _type_name(tp) -> str:
    if tp is type(None):
        return "null"
    if isinstance(tp, type):
        return (
            "a number"
            if tp is float
            else {bool: "true/false", int: "an integer", str: "a string"}.get(tp, f"a {tp.__name__} object")
        )
    args = typing.get_args(tp)
    if typing.get_origin(tp) is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_type_name(args[0]).split(' ', 1)[-1]}s"
        return f"a list of {len(args)} ({', '.join(_type_name(a) for a in args)})"
    return " or ".join(_type_name(a) for a in args)


def _shown(value: Any) -> str:
    kind = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list", dict: "an object"}
    return f"{kind.get(type(value), type(value).__name__)} {json.dumps(value)[:60]}"


def _convert(tp, value: Any, source: str, where: str) -> Any:
    """``value`` as the Python value of type ``tp``; anything JSON could not have written for it is refused."""

    def refuse() -> ValueError:
        return ValueError(f"{source}: field {where!r} must be {_type_name(tp)}, got {_shown(value)}")

    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        for candidate in inner:
            try:
                return _convert(candidate, value, source, where)
            except ValueError:
                # a nested object's own message names the nested field that is wrong
                if len(inner) == 1 and (dataclasses.is_dataclass(candidate) or typing.get_origin(candidate)):
                    raise
        raise refuse()
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise refuse()
        return _build(tp, value, source, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise refuse()
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, source, f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise refuse()
        return tuple(_convert(a, v, source, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if tp is bool:
        if not isinstance(value, bool):
            raise refuse()
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise refuse()
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise refuse()
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise refuse()
        return value
    raise TypeError(f"{where}: no JSON reading for the field type {tp!r}")


@dataclass(frozen=True)
class StageBehaviour:
    """What a training stage (or inference) turns on."""

    dual_prompt: bool  # answers carry [BOX] [SEG]
    tsf: bool  # <tsf> placeholders and TSF tokens
    guidance: bool  # proposer + selector drive box prompts (and L_prop)


def stage_behaviour(cfg: ModelConfig, stage: str) -> StageBehaviour:
    """Released recipe: host = the host model alone; stage 1 = TSF, no guidance; stage 2 = guidance, no TSF."""
    if stage == "host":
        return StageBehaviour(False, False, False)
    if stage == "proposer":
        return StageBehaviour(cfg.box, False, False)
    if stage == "stage1":
        return StageBehaviour(cfg.box, cfg.tsf, False)
    if stage == "stage2":
        return StageBehaviour(cfg.box, False, cfg.box)
    if stage == "inference":
        return StageBehaviour(cfg.box, cfg.tsf_at_test, cfg.box)
    raise ValueError(f"unknown stage {stage!r}; choose one of {', '.join(MODEL_STAGES + ('inference',))}")
