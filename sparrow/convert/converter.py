"""Convert a released VideoGLaMM-host folder (SPARROW or VideoGLaMM) into a kit model, in memory or as a folder.

Steps (docs/released-weights.md §3):

1. read the folder (:mod:`sparrow.convert.reader`) and check that it is a ``VideoGPT+`` Phi-3 export;
2. take the ``[SEG]``/``[BOX]`` ids from the released tokenizer files and check them against ``config.json``;
3. translate ``config.json`` into a ``Phi3Config`` and a :class:`~sparrow.model.config.ModelConfig` whose sizes are
   the release's (CLIP from ``--clip``, SAM2 from its yaml, the selector and ROI helper from the weight shapes);
4. build the kit model from those component configs and fill it through the release's key map, with the strict
   report; the loader quirks that change the weights in use are applied here (``roi_fusion_gamma`` policy);
5. optionally write a kit checkpoint folder that ``SparrowModel.from_pretrained`` loads, with the report and the
   provenance (``conversion.json``, ``conversion-report.txt``).

The temporal encoder and the proposer come from their own inputs: ``--internvideo2`` builds the native InternVideo2
at the file's sizes (:func:`sparrow.model.internvideo2.release_config`), ``--proposer`` the native Deformable-DETR
proposer of the ``checkpoint-*`` folder's ``config.json``; both are filled through their modules' own key maps, inside
the one report. Parts with no released weights in the inputs given (the temporal encoder without ``--internvideo2``,
held by a one-layer VideoMAE with InternVideo2's token layout; the proposer without ``--proposer``) keep the kit's
initialisation, drawn from a fixed seed, and the report names them.
"""

from __future__ import annotations

import inspect
import os
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from sparrow.convert import videoglamm as maps
from sparrow.convert.reader import ReleaseError, ReleaseFolder, load_tokenizer, read_release, read_weights
from sparrow.model import deformable_detr, internvideo2
from sparrow.model.state_report import Report, apply_keymap
from sparrow.model.tokens import BOX_TOKEN, SEG_TOKEN
from sparrow.storage import atomic_write_json, atomic_write_text, read_json

GAMMA_POLICIES: tuple[str, ...] = ("official", "stored")
# transformers 4.41's eager Phi-3 attention (the release's) lets each query see `sliding_window` + 1 keys, the
# installed transformers `sliding_window`: "official" stores the config's value + 1 so both attend the same keys.
SLIDING_WINDOW_POLICIES: tuple[str, ...] = ("official", "stored")
# transformers 4.41 renames every loaded key containing "gamma" to "weight", so the official loader never fills
# roi_fusion_gamma: it keeps the constructor value roi_fusion_init, which chat.py and the evaluation scripts pass.
OFFICIAL_GAMMA = 0.1
RELEASE_MODEL_TYPE = "VideoGPT+"
STAGE = {"sparrow": "stage2", "videoglamm": "host"}
REPORT_JSON = "conversion.json"
REPORT_TEXT = "conversion-report.txt"
SEED = 0


class ConversionError(ReleaseError):
    """A conversion whose key map left unexplained keys; ``report`` holds the full report."""

    def __init__(self, message: str, report: Report):
        super().__init__(message)
        self.report = report


@dataclass(frozen=True)
class ConvertOptions:
    """What ``sparrow convert`` takes: the release, its folder and the parts the export leaves out."""

    release: str
    src: Path
    clip: Path | None = None
    internvideo2: Path | None = None
    proposer: Path | None = None
    gamma: str = "official"
    sliding_window: str = "official"
    sam_config: Path | None = None  # default: sam2's configs/sam2/sam2_hiera_l.yaml, as the official code builds
    tokenizer: Path | None = None  # a folder with the same vocabulary in a format transformers reads without extras
    dtype: str | None = None  # None: the paper preset's LLM dtype
    profile: str = "paper"
    fuser_gamma: str = "official"  # glus: the memory-encoder layer scale as the official loader left it, or stored
    # the released InternVideo2 file does not show its head count: None takes the preset's when the widths agree
    internvideo2_heads: int | None = None
    proposer_base: Any = None  # ProposerSpec with the inference fields (top-k, input size); None: the preset's
    precision: str = "mixed"  # sparrow.model.config.PRECISIONS: float16 is the released evaluation's default
    # SAM2 propagation (sparrow.model.config.PROPAGATION_MODES); None: the host's own (VideoGLaMM and SPARROW:
    # framewise, SPARROW's evaluation; VideoGLaMM's own documented evaluation is its video predictor, video_branch)
    propagation: str | None = None

    def __post_init__(self) -> None:
        from sparrow.model.config import PRECISIONS, PROPAGATION_MODES

        if self.precision not in PRECISIONS:
            raise ValueError(f"--precision {self.precision}: choose one of {', '.join(PRECISIONS)}")
        if self.propagation is not None and self.propagation not in PROPAGATION_MODES:
            raise ValueError(f"--propagation {self.propagation}: choose one of {', '.join(PROPAGATION_MODES)}")
        for name in ("src", "clip", "internvideo2", "proposer", "sam_config", "tokenizer"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, Path(value))


@dataclass
class Converted:
    model: Any  # SparrowModel
    report: Report
    provenance: dict[str, Any]
    sam_yaml: str  # the SAM2 config the model was built from (the release's, with the official post-processing)


# releases of the other hosts: release -> (module, converter function)
HOST_RELEASES: dict[str, tuple[str, str]] = {
    "unipixel": ("sparrow.convert.unipixel", "convert_unipixel"),
    "glus": ("sparrow.convert.glus", "convert_glus"),
}
RELEASES: tuple[str, ...] = maps.RELEASES + tuple(HOST_RELEASES)


def _check_options(opts: ConvertOptions) -> None:
    if opts.release not in maps.RELEASES:
        raise ReleaseError(f"--release {opts.release}: choose one of {', '.join(RELEASES)}")
    if opts.gamma not in GAMMA_POLICIES:
        raise ReleaseError(f"--gamma {opts.gamma}: choose one of {', '.join(GAMMA_POLICIES)}")
    if opts.sliding_window not in SLIDING_WINDOW_POLICIES:
        raise ReleaseError(
            f"--sliding-window {opts.sliding_window}: choose one of {', '.join(SLIDING_WINDOW_POLICIES)}"
        )
    if opts.clip is None:
        raise ReleaseError("--clip: the release holds no CLIP tower; give the clip-vit-large-patch14-336 folder")
    for flag, path, is_dir in (
        ("--src", opts.src, True),
        ("--clip", opts.clip, True),
        ("--internvideo2", opts.internvideo2, False),
        ("--proposer", opts.proposer, True),
        ("--sam-config", opts.sam_config, False),
        ("--tokenizer", opts.tokenizer, True),
    ):
        if path is not None and not (Path(path).is_dir() if is_dir else Path(path).is_file()):
            raise ReleaseError(f"{flag} {path}: {'folder' if is_dir else 'file'} not found")
    if opts.proposer is not None and opts.release != "sparrow":
        raise ReleaseError(f"--proposer {opts.proposer}: the videoglamm release has no proposer")


def token_ids(release: ReleaseFolder, name: str) -> dict[str, int]:
    """``[SEG]``/``[BOX]`` ids of the released tokenizer, checked against ``config.json``'s token fields."""
    ids = {}
    wanted = {SEG_TOKEN: "seg_token_idx", BOX_TOKEN: "box_token_idx"}
    for token, field in wanted.items():
        if token not in release.added_tokens:
            if token == BOX_TOKEN and name == "videoglamm":
                continue
            raise ReleaseError(f"{release.path / 'added_tokens.json'}: {token} is not an added token")
        ids[token] = release.added_tokens[token]
        stored = release.config.get(field)
        if stored is not None and int(stored) != ids[token]:
            raise ReleaseError(
                f"{release.path / 'config.json'}: {field}={stored} but the tokenizer gives {token} id {ids[token]}"
            )
    return ids


def phi3_config(config: dict[str, Any], vocab_size: int, sliding_window: str = "official"):
    """The ``Phi3Config`` of a ``VideoGPT+`` config: its Phi-3 fields, everything multimodal left out;
    ``sliding_window``: a :data:`SLIDING_WINDOW_POLICIES` policy."""
    from transformers import Phi3Config

    accepted = set(inspect.signature(Phi3Config.__init__).parameters) - {"self", "kwargs"}
    fields = {k: v for k, v in config.items() if k in accepted}
    fields["vocab_size"] = vocab_size
    if sliding_window == "official" and fields.get("sliding_window") is not None:
        fields["sliding_window"] = int(fields["sliding_window"]) + 1
    fields["tie_word_embeddings"] = False
    return Phi3Config(**fields)


def _tokenizer(opts: ConvertOptions, ids: dict[str, int], vocab: int):
    tokenizer = load_tokenizer(opts.tokenizer or opts.src)
    for token in (SEG_TOKEN, BOX_TOKEN):
        if token not in tokenizer.get_vocab():
            tokenizer.add_tokens([token])
    source = opts.tokenizer or opts.src
    for token in (SEG_TOKEN, BOX_TOKEN):
        got = tokenizer.convert_tokens_to_ids(token)
        if token in ids and got != ids[token]:
            raise ReleaseError(f"{source}: {token} has id {got}, the release's tokenizer gives {ids[token]}")
    if len(tokenizer) != vocab:
        raise ReleaseError(f"{source}: {len(tokenizer)} tokens, the converted model has {vocab} embedding rows")
    return tokenizer


def _sam_yaml(opts: ConvertOptions) -> Path:
    if opts.sam_config is not None:
        return Path(opts.sam_config)
    import sam2

    return Path(sam2.__file__).parent / "configs" / "sam2" / "sam2_hiera_l.yaml"


def _heads(width: int) -> int:
    return next(h for h in (16, 8, 4, 2, 1) if width % h == 0)


def temporal_config(opts: ConvertOptions, state: dict[str, torch.Tensor], preset) -> internvideo2.InternVideo2Config:
    """The InternVideo2 sizes of the ``--internvideo2`` file; the head count from the option or the preset."""
    width = int(state[internvideo2.RELEASE_PREFIX + "patch_embed.proj.weight"].shape[0])
    heads = opts.internvideo2_heads
    if heads is None:
        if preset.kind != "internvideo2" or preset.hidden_size != width:
            raise ReleaseError(
                f"--internvideo2 {opts.internvideo2}: a {width}-wide encoder; give its head count (--internvideo2-heads)"
            )
        heads = preset.num_heads
    return internvideo2.release_config(state, heads)


def _model_config(
    opts: ConvertOptions,
    release: ReleaseFolder,
    llm_config,
    clip_config,
    gamma_value: float,
    temporal: internvideo2.InternVideo2Config | None,
    proposer_config: dict | None,
):
    from sparrow.convert.specs import clip_vision_spec, llm_spec
    from sparrow.model.config import ModelConfig, SamSpec, TemporalSpec

    base = ModelConfig.for_preset("videoglamm", opts.profile)
    cfg = release.config
    state = release.state
    mm_hidden = int(cfg.get("mm_hidden_size", state["model.mm_projector.0.weight"].shape[1]))
    changes: dict[str, Any] = dict(
        box=opts.release == "sparrow",
        llm=llm_spec("phi3", llm_config, base, opts.dtype),
        vision=clip_vision_spec(clip_config, int(cfg.get("mm_vision_select_layer", -2))),
        # InternVideo2's token layout (4-frame chunks, tubelet 1, 224 px, patch 14: 256 tokens per frame) at the
        # width of the released mm_projector; without the InternVideo2 file this VideoMAE holds its place.
        temporal=TemporalSpec(
            kind="videomae",
            image_size=224,
            patch_size=14,
            chunk_size=4,
            tubelet_size=1,
            hidden_size=mm_hidden,
            num_layers=1,
            num_heads=_heads(mm_hidden),
            intermediate_size=4 * mm_hidden,
        ),
        sam=SamSpec(config=str(_sam_yaml(opts)), checkpoint=None, image_size=None, tiny=False),
        tsf_k=int(cfg.get("tsf_k", base.tsf_k)),
        tsf_kmeans_iters=int(cfg.get("tsf_kmeans_iters", base.tsf_kmeans_iters)),
    )
    if temporal is not None:
        if temporal.embed_dim != mm_hidden:
            raise ReleaseError(
                f"--internvideo2 {opts.internvideo2}: {temporal.embed_dim}-wide, the release's mm_projector takes {mm_hidden}"
            )
        changes["temporal"] = TemporalSpec(
            kind="internvideo2",
            image_size=temporal.image_size,
            patch_size=temporal.patch_size,
            chunk_size=temporal.num_frames,
            tubelet_size=temporal.tubelet_size,
            hidden_size=temporal.embed_dim,
            num_layers=temporal.depth,
            num_heads=temporal.num_heads,
            intermediate_size=temporal.mlp_dim,
        )
    if opts.release == "sparrow":
        seg_proj = state["model.proposal_selector.seg_proj.weight"]
        prop_proj = state["model.proposal_selector.prop_proj.weight"]
        if proposer_config is not None:
            # the official proposer builds its SAM2 image encoder from the same yaml name as the MLLM's SAM2
            spec = deformable_detr.release_spec(
                proposer_config,
                opts.proposer_base or base.proposer,
                str(opts.proposer / "config.json"),
                opts.sam_config,
            )
            if spec.d_model != int(prop_proj.shape[1]):
                raise ReleaseError(
                    f"--proposer {opts.proposer}: d_model {spec.d_model}, the release's proposal_selector takes "
                    f"{int(prop_proj.shape[1])}"
                )
            changes["proposer"] = spec
        else:
            changes["proposer"] = replace(
                opts.proposer_base or base.proposer, path=None, d_model=int(prop_proj.shape[1])
            )
        roi_query = state.get("model.roi_helper.query_proj.weight")
        changes["selector"] = replace(
            base.selector,
            hidden_dim=int(seg_proj.shape[0]),
            roi_helper=roi_query is not None,
            roi_hidden_dim=int(roi_query.shape[0]) if roi_query is not None else None,
            roi_fusion_init=gamma_value,
        )
        if changes["proposer"].d_model % changes["proposer"].num_heads:
            changes["proposer"] = replace(changes["proposer"], num_heads=_heads(changes["proposer"].d_model))
    return base.replace(**changes)


def _stage_components(staging: Path, cfg, llm_config, clip_config, tokenizer, sam_yaml: Path) -> None:
    """The component configs ``SparrowModel(cfg, checkpoint_dir=staging)`` builds from."""
    from transformers import CLIPVisionConfig

    comp = staging / "components"
    tokenizer.save_pretrained(staging / "tokenizer")
    llm_config.save_pretrained(comp / "llm")
    CLIPVisionConfig(**clip_config.to_dict()).save_pretrained(comp / "vision")
    t = cfg.temporal
    if t.kind == "internvideo2":
        from sparrow.model.temporal_encoder import TemporalEncoder

        TemporalEncoder.build(t, None).save_config(comp / "temporal")
    else:
        _videomae_config(t).save_pretrained(comp / "temporal")
    official_sam_yaml(sam_yaml, comp / "sam2.yaml")
    if cfg.box:
        sam_dim = _sam_dim(sam_yaml)
        atomic_write_json(comp / "proposer.json", {"spec": _asdict(cfg.proposer), "in_channels": sam_dim})


def _videomae_config(t):
    from transformers import VideoMAEConfig

    return VideoMAEConfig(
        image_size=t.image_size,
        patch_size=t.patch_size,
        num_frames=t.chunk_size,
        tubelet_size=t.tubelet_size,
        hidden_size=t.hidden_size,
        num_hidden_layers=t.num_layers,
        num_attention_heads=t.num_heads,
        intermediate_size=t.intermediate_size,
        use_mean_pooling=False,
    )


# What the official loader's build_sam2 (apply_postprocessing=True) adds to the yaml: an eval-mode single-mask call
# falls back to the best multimask output when mask 0 is unstable.
OFFICIAL_SAM_POSTPROCESSING = (
    "model.sam_mask_decoder_extra_args.dynamic_multimask_via_stability=true",
    "model.sam_mask_decoder_extra_args.dynamic_multimask_stability_delta=0.05",
    "model.sam_mask_decoder_extra_args.dynamic_multimask_stability_thresh=0.98",
)


def official_sam_yaml(source: Path, target: Path) -> Path:
    """``source`` with the official loader's SAM2 post-processing, written to ``target``."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.merge(OmegaConf.load(source), OmegaConf.from_dotlist(list(OFFICIAL_SAM_POSTPROCESSING)))
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(target, OmegaConf.to_yaml(cfg))
    return target


def _asdict(spec) -> dict[str, Any]:
    import dataclasses

    return dataclasses.asdict(spec)


def _sam_dim(sam_yaml: Path) -> int:
    from omegaconf import OmegaConf

    return int(OmegaConf.load(sam_yaml).model.memory_attention.d_model)


def _clip_config(folder: Path):
    from transformers import CLIPVisionConfig

    data = read_json(folder / "config.json")
    if "vision_config" in data:
        return CLIPVisionConfig(**data["vision_config"])
    return CLIPVisionConfig(**{k: v for k, v in data.items() if k not in ("architectures", "model_type")})


def convert(opts: ConvertOptions) -> Converted:
    """The kit model of a released folder, filled through the key map; unexplained keys raise ConversionError.
    ``opts.precision`` other than ``mixed`` casts the filled model (every module) as the released evaluation's
    ``--precision`` does; ``opts.propagation`` sets how SAM2 carries the prompt over the frames."""
    if opts.release in HOST_RELEASES:
        import importlib

        module, function = HOST_RELEASES[opts.release]
        converted = getattr(importlib.import_module(module), function)(opts)
    else:
        converted = _convert_videoglamm(opts)
    if opts.precision != "mixed":
        converted.model.set_precision(opts.precision)
    if opts.propagation not in (None, converted.model.cfg.propagation):
        converted.model.cfg = converted.model.cfg.replace(propagation=opts.propagation)
    return converted


def _convert_videoglamm(opts: ConvertOptions) -> Converted:
    from sparrow.model.sparrow_model import SparrowModel

    _check_options(opts)
    release = read_release(opts.src)
    model_type = release.config.get("model_type")
    if model_type != RELEASE_MODEL_TYPE:
        raise ReleaseError(f"{opts.src / 'config.json'}: model_type {model_type!r}, expected {RELEASE_MODEL_TYPE!r}")
    ids = token_ids(release, opts.release)
    stored_rows = int(release.state["model.embed_tokens.weight"].shape[0])
    if stored_rows != int(release.config["vocab_size"]):
        raise ReleaseError(
            f"{opts.src / 'config.json'}: vocab_size {release.config['vocab_size']}, weights hold {stored_rows} rows"
        )
    # VideoGLaMM has no [BOX]; the kit's dual prompt needs one, so it gets a new last row (never emitted by the
    # host stage, which is what a VideoGLaMM checkpoint is used for).
    vocab = stored_rows + (BOX_TOKEN not in ids)
    tokenizer = _tokenizer(opts, ids, vocab)
    llm_config = phi3_config(release.config, vocab, opts.sliding_window)
    clip_config = _clip_config(Path(opts.clip))
    clip_state, _ = read_weights(opts.clip)
    stored_gamma = release.state.get("model.roi_fusion_gamma")
    gamma_value = OFFICIAL_GAMMA if opts.gamma == "official" or stored_gamma is None else float(stored_gamma)
    from sparrow.model.config import ModelConfig

    inputs = {"release": release.state, "clip": clip_state}
    temporal = None
    if opts.internvideo2 is not None:
        inputs["internvideo2"] = internvideo2.read_release(opts.internvideo2)
        temporal = temporal_config(
            opts, inputs["internvideo2"], ModelConfig.for_preset("videoglamm", opts.profile).temporal
        )
    proposer_config = None
    if opts.proposer is not None:
        proposer_config = deformable_detr.read_release_config(opts.proposer)
        inputs["proposer"], _ = read_weights(opts.proposer)
    cfg = _model_config(opts, release, llm_config, clip_config, gamma_value, temporal, proposer_config)
    with tempfile.TemporaryDirectory(prefix="sparrow-convert-") as tmp:
        staging = Path(tmp)
        _stage_components(staging, cfg, llm_config, clip_config, tokenizer, _sam_yaml(opts))
        torch.manual_seed(SEED)
        model = SparrowModel(cfg, checkpoint_dir=staging)
        sam_text = (staging / "components" / "sam2.yaml").read_text()
    model.sam_yaml = None
    kit_state = model.state_dict()
    keymap = maps.keymap(opts.release, temporal, opts.proposer is not None)

    def vocab_rows(t: torch.Tensor) -> torch.Tensor:
        return t if t.shape[0] == vocab else torch.cat([t, t.new_zeros(vocab - t.shape[0], *t.shape[1:])])

    transforms = {"gamma": lambda t: torch.tensor(gamma_value, dtype=torch.float32), "vocab": vocab_rows}
    mapped, report = apply_keymap(keymap, inputs, kit_state, transforms)
    if vocab != stored_rows:
        report.notes.append(f"[BOX] added as id {vocab - 1} with zero embedding and lm_head rows")
    if stored_gamma is not None:
        report.notes.append(
            f"roi_fusion_gamma: stored {float(stored_gamma):.6g}, used {gamma_value:.6g} (--gamma {opts.gamma})"
        )
    return finish_conversion(
        model,
        kit_state,
        mapped,
        report,
        opts.release,
        opts.src,
        release,
        STAGE[opts.release],
        sam_text,
        clip=str(opts.clip),
        internvideo2=None if opts.internvideo2 is None else str(opts.internvideo2),
        proposer=None if opts.proposer is None else str(opts.proposer),
        gamma_policy=opts.gamma,
        sliding_window_policy=opts.sliding_window,
        sliding_window={"stored": release.config.get("sliding_window"), "used": llm_config.sliding_window},
        gamma_stored=None if stored_gamma is None else float(stored_gamma),
        gamma_used=gamma_value if opts.release == "sparrow" else None,
        token_ids={SEG_TOKEN: model.seg_token_id, BOX_TOKEN: model.box_token_id},
    )


def write_converted(converted: Converted, out: str | os.PathLike) -> Path:
    """Write the kit checkpoint folder with the conversion record (``conversion.json``, ``conversion-report.txt``)."""
    out = Path(out)
    with tempfile.TemporaryDirectory(prefix="sparrow-convert-") as tmp:
        converted.model.sam_yaml = Path(tmp) / "sam2.yaml"
        converted.model.sam_yaml.write_text(converted.sam_yaml)
        converted.model.save_pretrained(out)
    converted.model.sam_yaml = None
    atomic_write_json(out / REPORT_JSON, converted.provenance)
    atomic_write_text(out / REPORT_TEXT, converted.report.format(limit=10**9) + "\n")
    return out


def save_failed_report(report: Report, out: str | os.PathLike) -> Path:
    """Where a failed conversion's full report goes: next to the folder that was not written."""
    out = Path(out)
    path = out.with_name(out.name + "." + REPORT_TEXT)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, report.format(limit=10**9) + "\n")
    return path


def finish_conversion(
    model: Any,
    kit_state: dict,
    mapped: dict,
    report: Any,
    release_name: str,
    src: Any,
    release: Any,
    stage: str,
    sam_text: str,
    **provenance: Any,
) -> Converted:
    """Every release's last step: refuse unexplained keys, load the mapped weights strictly over the kit's own, put
    the model in ``stage`` and record where everything came from (``provenance``: the release's own fields)."""
    if not report.ok:
        raise ConversionError(f"{src}: the key map left unexplained keys\n{report.format()}", report)
    model.load_state_dict({**kit_state, **mapped}, strict=True)
    model.configure_stage(stage)
    record = {
        "release": release_name,
        "src": str(src),
        "weights": release.weight_files,
        **provenance,
        "generation_config": release.generation_config,
        "stage": stage,
        "report": report.to_json(),
    }
    return Converted(model.eval(), report, record, sam_text)


__all__ = [
    "GAMMA_POLICIES",
    "RELEASES",
    "SLIDING_WINDOW_POLICIES",
    "ConversionError",
    "ConvertOptions",
    "Converted",
    "convert",
    "phi3_config",
    "save_failed_report",
    "token_ids",
    "write_converted",
]
