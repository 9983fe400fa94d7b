"""The GLUS-A release (``Swindl/GLUS-A``) -> a kit ``glus`` host checkpoint.

The release is LISA's ``llava`` folder written by ``save_pretrained`` under transformers 4.31 (``.bin`` shards, the
slow LLaMA tokenizer) after a LoRA merge, with the CLIP tower left out (docs/released-weights.md §7):

======================  ================================  ==============================  ==========
component               release                           kit                             input
======================  ================================  ==============================  ==========
LLaMA LLM               ``model.{embed_tokens,layers,     ``llm.model.model.*``,          release
                        norm}``, ``lm_head``              ``llm.model.lm_head``
mm_projector (linear)   ``model.mm_projector``            ``image_adapter.proj.0``        release
L->V projector          ``model.text_hidden_fcs.0``       ``lv_projector.net``            release
SAM2 Hiera-L            ``model.visual_model``            ``pixel_decoder.sam``           release
CLIP ViT-L/14 (224)     ``vision_model``                  ``spatial.clip``                ``--clip``
======================  ================================  ==============================  ==========

The loader quirk: transformers 4.31 renames every loaded key containing ``gamma`` to ``weight``, so the memory
encoder's layer scale ``fuser.layers.{0,1}.gamma`` never reaches the official model, which keeps the constructor
value (the yaml's ``layer_scale_init_value``, 1e-6: an almost-identity fuser). ``--fuser-gamma official`` (default)
reproduces that; ``stored`` keeps the saved values.

Tokens: ``[SEG]``, ``<im_start>``, ``<im_end>`` are in the release; ``[BOX]`` (unused by the host) gets a new last
row with zero embedding and ``lm_head`` rows.
"""

from __future__ import annotations

import inspect
import tempfile
from pathlib import Path
from typing import Any

import torch

from sparrow.convert.reader import ReleaseError, load_tokenizer, read_release, read_weights
from sparrow.model.state_report import Allowance, KeyMap, Rule, Section, apply_keymap

MODEL_TYPE = "llava"
FUSER_GAMMA_POLICIES: tuple[str, ...] = ("official", "stored")
DEFAULT_SAM_CONFIG = "configs/sam2/sam2_hiera_l.yaml"
LAYER_SCALE_INIT = 1e-6  # CXBlock's default, used when the yaml does not set it

_LORA = Allowance(
    r".+\.lora_[AB]\.default\.weight", "the kit's LoRA factors: lora_B is zero, so they add nothing", "kit"
)
UNUSED = (
    Allowance(
        r"(?:text_model\..+|text_projection\..+|visual_projection\..+|logit_scale)",
        "the CLIP folder's text tower and projections (the spatial encoder uses the vision tower only)",
        "clip",
    ),
    Allowance(r"model\.vision_tower\..+", "a CLIP copy in the export; the spatial tower is read from --clip"),
    Allowance(
        r"model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq",
        "RoPE inverse frequencies, a buffer transformers 4.31 saved; recomputed from rope_theta and the head size",
    ),
)


def keymap() -> KeyMap:
    """GLUS-A (plus the CLIP folder) -> the kit's ``glus`` host."""
    return KeyMap(
        "glus->kit",
        (
            Section(
                "LLaMA LLM",
                "release",
                "",
                "",
                (
                    Rule(r"model\.embed_tokens\.weight", r"llm.model.model.embed_tokens.weight", "vocab"),
                    Rule(r"lm_head\.weight", r"llm.model.lm_head.weight", "vocab"),
                    # the stored RoPE buffers stay unmapped (allowed below)
                    Rule(r"model\.((?:layers|norm)\.(?!.*rotary_emb\.inv_freq$).+)", r"llm.model.model.\1"),
                ),
                lora_aware=True,
            ),
            Section(
                "mm_projector (linear)", "release", "model.mm_projector.", "image_adapter.proj.0.", lora_aware=True
            ),
            Section(
                "L->V projector (text_hidden_fcs)",
                "release",
                "model.text_hidden_fcs.0.",
                "lv_projector.net.",
                lora_aware=True,
            ),
            Section(
                "SAM2",
                "release",
                "model.visual_model.",
                "pixel_decoder.sam.",
                (
                    Rule(
                        r"memory_encoder\.fuser\.layers\.(\d+)\.(?:gamma|weight)",
                        r"memory_encoder.fuser.layers.\1.gamma",
                        "fuser_gamma",
                    ),
                    Rule(r"(.+)", r"\1"),
                ),
            ),
            Section("CLIP spatial tower (224)", "clip", "vision_model.", "spatial.clip."),
        ),
        UNUSED,
        (_LORA,),
    )


def llama_config(config: dict[str, Any], vocab_size: int):
    """The ``LlamaConfig`` of LISA's ``llava`` config: its LLaMA fields, everything multimodal left out."""
    from transformers import LlamaConfig

    accepted = set(inspect.signature(LlamaConfig.__init__).parameters) - {"self", "kwargs"}
    fields = {k: v for k, v in config.items() if k in accepted}
    fields["vocab_size"] = vocab_size
    fields["tie_word_embeddings"] = False
    return LlamaConfig(**fields)


def layer_scale_init(sam_yaml: Path) -> float:
    """The memory-encoder fuser's constructor value in ``sam_yaml`` (what the official loader leaves in place)."""
    from omegaconf import OmegaConf

    layer = OmegaConf.load(sam_yaml).model.memory_encoder.fuser.layer
    return float(layer.get("layer_scale_init_value", LAYER_SCALE_INIT))


def _sam_yaml(sam_config: Path | None) -> Path:
    if sam_config is not None:
        return Path(sam_config)
    import sam2

    return Path(sam2.__file__).parent / DEFAULT_SAM_CONFIG


def _tokenizer(opts, seg_id: int, vocab: int):
    tokenizer = load_tokenizer(opts.tokenizer or opts.src)
    source = opts.tokenizer or opts.src
    if tokenizer.convert_tokens_to_ids("[SEG]") != seg_id:
        raise ReleaseError(f"{source}: [SEG] has id {tokenizer.convert_tokens_to_ids('[SEG]')}, the release {seg_id}")
    tokenizer.add_tokens(["[BOX]"], special_tokens=True)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.unk_token
    if len(tokenizer) != vocab:
        raise ReleaseError(f"{source}: {len(tokenizer)} tokens, the converted model has {vocab} embedding rows")
    return tokenizer


def _model_config(opts, release_cfg: dict[str, Any], lcfg, clip_config, sam_yaml: Path):
    from sparrow.convert.specs import clip_vision_spec, llm_spec
    from sparrow.model.config import ModelConfig, SamSpec

    base = ModelConfig.for_preset("glus", opts.profile)
    return base.replace(
        box=False,
        llm=llm_spec("llama", lcfg, base, opts.dtype),
        vision=clip_vision_spec(clip_config, int(release_cfg.get("mm_vision_select_layer", -2))),
        sam=SamSpec(config=str(sam_yaml), checkpoint=None, image_size=None, tiny=False),
    )


def convert_glus(opts) -> Any:
    """The kit model of a GLUS-A release folder (``opts``: :class:`sparrow.convert.ConvertOptions`)."""
    from transformers import CLIPVisionConfig

    from sparrow.convert.converter import _clip_config, finish_conversion, official_sam_yaml
    from sparrow.model.sparrow_model import SparrowModel

    src = Path(opts.src)
    if not src.is_dir():
        raise ReleaseError(f"--src {src}: folder not found")
    if opts.clip is None:
        raise ReleaseError("--clip: the release holds no CLIP tower; give the clip-vit-large-patch14 folder")
    if not Path(opts.clip).is_dir():
        raise ReleaseError(f"--clip {opts.clip}: folder not found")
    if opts.fuser_gamma not in FUSER_GAMMA_POLICIES:
        raise ReleaseError(f"--fuser-gamma {opts.fuser_gamma}: choose one of {', '.join(FUSER_GAMMA_POLICIES)}")
    release = read_release(src)
    if release.config.get("model_type") != MODEL_TYPE:
        raise ReleaseError(
            f"{src / 'config.json'}: model_type {release.config.get('model_type')!r}, expected {MODEL_TYPE!r}"
        )
    if "[SEG]" not in release.added_tokens:
        raise ReleaseError(f"{src}: [SEG] is not an added token of the released tokenizer")
    seg_id = release.added_tokens["[SEG]"]
    rows = int(release.state["model.embed_tokens.weight"].shape[0])
    vocab = rows + 1  # [BOX]
    tokenizer = _tokenizer(opts, seg_id, vocab)
    lcfg = llama_config(release.config, vocab)
    clip_config = _clip_config(Path(opts.clip))
    clip_state, _ = read_weights(opts.clip)
    sam_yaml = _sam_yaml(opts.sam_config)
    if not sam_yaml.is_file():
        raise ReleaseError(f"--sam-config {sam_yaml}: file not found")
    gamma_init = layer_scale_init(sam_yaml)
    cfg = _model_config(opts, release.config, lcfg, clip_config, sam_yaml)
    with tempfile.TemporaryDirectory(prefix="sparrow-convert-") as tmp:
        staging = Path(tmp)
        comp = staging / "components"
        tokenizer.save_pretrained(staging / "tokenizer")
        lcfg.save_pretrained(comp / "llm")
        CLIPVisionConfig(**clip_config.to_dict()).save_pretrained(comp / "vision")
        official_sam_yaml(sam_yaml, comp / "sam2.yaml")
        torch.manual_seed(0)
        model = SparrowModel(cfg, checkpoint_dir=staging)
        sam_text = (comp / "sam2.yaml").read_text()
    model.sam_yaml = None
    kit_state = model.state_dict()

    def vocab_rows(t: torch.Tensor) -> torch.Tensor:
        return torch.cat([t, t.new_zeros(vocab - t.shape[0], *t.shape[1:])])

    def fuser_gamma(t: torch.Tensor) -> torch.Tensor:
        return t if opts.fuser_gamma == "stored" else torch.full_like(t, gamma_init)

    transforms = {"vocab": vocab_rows, "fuser_gamma": fuser_gamma}
    mapped, report = apply_keymap(keymap(), {"release": release.state, "clip": clip_state}, kit_state, transforms)
    report.notes.append(f"[BOX] added as id {vocab - 1} with zero embedding and lm_head rows")
    report.notes.append(
        f"memory_encoder.fuser gamma: {'stored values' if opts.fuser_gamma == 'stored' else gamma_init} "
        f"(--fuser-gamma {opts.fuser_gamma}; the official loader drops the stored values)"
    )
    return finish_conversion(
        model,
        kit_state,
        mapped,
        report,
        "glus",
        src,
        release,
        "host",
        sam_text,
        clip=str(opts.clip),
        sam_config=str(sam_yaml),
        fuser_gamma_policy=opts.fuser_gamma,
        fuser_gamma_used=None if opts.fuser_gamma == "stored" else gamma_init,
        token_ids={"[SEG]": model.seg_token_id, "[BOX]": model.box_token_id},
    )
