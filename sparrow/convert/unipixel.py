"""The UniPixel-3B release (``PolyU-ChenLab/UniPixel-3B``) -> a kit ``unipixel`` host checkpoint.

The release is a ``pixel_qwen2_5_vl`` folder written by ``save_pretrained`` under transformers 4.53, which stores
Qwen2.5-VL with its legacy key names (docs/released-weights.md §6):

======================  ================================  =========================================
component               release                           kit
======================  ================================  =========================================
Qwen2.5 LLM             ``model.{embed_tokens,layers,     ``llm.model.model.language_model.*``,
                        norm}``, ``lm_head`` (tied)       ``llm.model.lm_head``
ViT and patch merger    ``visual.*``                      ``llm.model.model.visual.*``
seg_head                ``seg_head.{0,1,3}``              ``lv_projector.net.{0,1,3}``
SAM2.1 Hiera-B+         ``sam2.*``                        ``pixel_decoder.sam.*``
======================  ================================  =========================================

- UniPixel's SAM2 fork names the memory-encoder layer scale ``fuser.layers.{0,1}.weight`` (its checkpoint loader
  renames sam2's ``gamma``); sam2 and the kit call it ``gamma``.
- ``seg_head.0`` is Qwen2's RMSNorm (eps 1e-6, computed in float32): the converted model sets
  ``ModelConfig.seg_head_norm_eps``.
- Tokens: ``<|ref|>``, ``<|seg|>``, ``<|mem|>`` were added; there is no ``[BOX]``. The converted tokenizer spells
  ``<|seg|>`` as the kit's ``[SEG]`` (same id, same embedding row), and ``[BOX]`` is added at the next free id.
- The object-memory and visual-prompt modules (``ref_*``, ``tem_*``, ``msk_proj``) serve ``<|ref|>``/``<|mem|>``
  inputs, which referring segmentation from text never uses; they are dropped on a named allow-list.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from sparrow.convert.reader import ReleaseError, read_release
from sparrow.model.state_report import Allowance, KeyMap, Rule, Section, apply_keymap

MODEL_TYPE = "pixel_qwen2_5_vl"
RELEASE_SEG = "<|seg|>"
KIT_SEG = "[SEG]"
KIT_BOX = "[BOX]"
SEG_HEAD_EPS = 1e-6  # Qwen2RMSNorm's default, which UniPixel's seg_head keeps
DEFAULT_SAM_CONFIG = "configs/sam2.1/sam2.1_hiera_b+.yaml"
# config.json fields of UniPixel's own (SAM2 and token bookkeeping), not Qwen2.5-VL's
PIXEL_FIELDS = (
    "sam2_config",
    "sam2_image_size",
    "sam2_hidden_tokens",
    "sam2_batch_mode",
    "sam2_enable_decoder",
    "sam2_checkpoint",
    "sam2_inference_mode",
    "base_model_path",
    "seg_token_id",
    "ref_token_id",
    "mem_token_id",
    "sample_objects",
)
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
)

UNUSED_MODULES = Allowance(
    r"(?:ref_encoder|ref_proj_single|ref_proj_double|ref_proj|tem_pe|tem_emb|tem_proj|msk_proj)\..+",
    "UniPixel's object-memory and visual-prompt modules (<|ref|>/<|mem|> inputs): unused by text referring",
)
_LORA = Allowance(
    r".+\.lora_[AB]\.default\.weight", "the kit's LoRA factors: lora_B is zero, so they add nothing", "kit"
)
_SAM_RULES = (
    Rule(r"memory_encoder\.fuser\.layers\.(\d+)\.(?:weight|gamma)", r"memory_encoder.fuser.layers.\1.gamma"),
    Rule(r"(.+)", r"\1"),
)


def keymap() -> KeyMap:
    """UniPixel-3B -> the kit's ``unipixel`` host."""
    llm = "llm.model.model.language_model."
    return KeyMap(
        "unipixel->kit",
        (
            Section(
                "Qwen2.5 LLM",
                "release",
                "",
                "",
                (
                    Rule(r"model\.embed_tokens\.weight", llm + "embed_tokens.weight", "vocab"),
                    Rule(r"lm_head\.weight", r"llm.model.lm_head.weight", "vocab"),
                    Rule(r"model\.((?:layers|norm)\..+)", llm + r"\1"),
                ),
                lora_aware=True,
            ),
            Section("Qwen2.5-VL ViT and merger", "release", "visual.", "llm.model.model.visual.", lora_aware=True),
            Section("seg_head", "release", "seg_head.", "lv_projector.net.", lora_aware=True),
            Section("SAM2.1", "release", "sam2.", "pixel_decoder.sam.", _SAM_RULES),
        ),
        (UNUSED_MODULES,),
        (_LORA,),
    )


def qwen_config(config: dict[str, Any], vocab_size: int):
    """The ``Qwen2_5_VLConfig`` of a ``pixel_qwen2_5_vl`` config (UniPixel's own fields left out)."""
    from transformers import Qwen2_5_VLConfig

    fields = {k: v for k, v in config.items() if k not in PIXEL_FIELDS + ("model_type", "architectures")}
    fields["vocab_size"] = vocab_size
    if isinstance(fields.get("text_config"), dict):
        fields["text_config"] = {**fields["text_config"], "vocab_size": vocab_size}
    return Qwen2_5_VLConfig(**fields)


def _renamed_tokenizer(src: Path, target: Path, renames: dict[str, str]) -> None:
    """Copy the tokenizer files of ``src`` with the added tokens of ``renames`` respelled (ids unchanged)."""
    target.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        path = src / name
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".json":
            for old, new in renames.items():
                text = text.replace(json.dumps(old), json.dumps(new))
        (target / name).write_text(text, encoding="utf-8")


def _chat_template(src: Path) -> str | None:
    """The release's chat template, which UniPixel's processor applies (sparrow.model.unipixel_protocol): the
    tokenizer config's, else the processor's ``chat_template.jinja`` or ``chat_template.json``."""
    jinja, plain = src / "chat_template.jinja", src / "chat_template.json"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    if plain.is_file():
        try:
            return json.loads(plain.read_text(encoding="utf-8"))["chat_template"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ReleaseError(f"{plain}: no chat_template string ({exc})") from exc
    return None


def _tokenizer(src: Path, seg_id: int, staging: Path):
    from transformers import AutoTokenizer

    _renamed_tokenizer(src, staging / "tokenizer-src", {RELEASE_SEG: KIT_SEG})
    try:
        tokenizer = AutoTokenizer.from_pretrained(staging / "tokenizer-src", local_files_only=True)
    except Exception as exc:  # transformers raises OSError or ValueError for unreadable tokenizer files
        raise ReleaseError(f"{src}: cannot load the tokenizer ({type(exc).__name__}: {exc})") from exc
    if not tokenizer.chat_template:
        tokenizer.chat_template = _chat_template(src)
    tokenizer.add_tokens([KIT_BOX], special_tokens=True)
    got = tokenizer.convert_tokens_to_ids(KIT_SEG)
    if got != seg_id:
        raise ReleaseError(f"{src}: {RELEASE_SEG} respelled {KIT_SEG} has id {got}, the release gives {seg_id}")
    return tokenizer


def _sam_yaml(sam_config: Path | None) -> Path:
    if sam_config is not None:
        return Path(sam_config)
    import sam2

    return Path(sam2.__file__).parent / DEFAULT_SAM_CONFIG


def _model_config(release_cfg: dict[str, Any], qcfg, sam_yaml: Path, dtype: str | None, profile: str):
    from sparrow.convert.specs import llm_spec
    from sparrow.model.config import ModelConfig, SamSpec, VisionSpec

    base = ModelConfig.for_preset("unipixel", profile)
    text = qcfg.get_text_config()
    vision = qcfg.vision_config
    return base.replace(
        box=False,
        llm=llm_spec("qwen2_5_vl", text, base, dtype),
        vision=VisionSpec(
            kind="qwen2_5_vl",
            image_size=base.vision.image_size,
            patch_size=vision.patch_size,
            hidden_size=vision.hidden_size,
            num_layers=vision.depth,
            num_heads=vision.num_heads,
            intermediate_size=vision.intermediate_size,
        ),
        sam=SamSpec(
            config=str(sam_yaml),
            checkpoint=None,
            image_size=int(release_cfg.get("sam2_image_size", 768)),
            tiny=False,
            object_score_gating=True,
        ),
        seg_tokens_per_target=int(release_cfg.get("sam2_hidden_tokens", 2)),
        seg_head_norm_eps=SEG_HEAD_EPS,
        protocol="unipixel-native",
    )


def convert_unipixel(opts) -> Any:
    """The kit model of a UniPixel release folder (``opts``: :class:`sparrow.convert.ConvertOptions`)."""
    from sparrow.convert.converter import finish_conversion
    from sparrow.model.sparrow_model import SparrowModel

    src = Path(opts.src)
    if not src.is_dir():
        raise ReleaseError(f"--src {src}: folder not found")
    if opts.clip is not None:
        raise ReleaseError(f"--clip {opts.clip}: the unipixel release has its own vision tower")
    release = read_release(src)
    if release.config.get("model_type") != MODEL_TYPE:
        raise ReleaseError(
            f"{src / 'config.json'}: model_type {release.config.get('model_type')!r}, expected {MODEL_TYPE!r}"
        )
    if RELEASE_SEG not in release.added_tokens:
        raise ReleaseError(f"{src}: {RELEASE_SEG} is not an added token of the released tokenizer")
    seg_id = release.added_tokens[RELEASE_SEG]
    stored = release.config.get("seg_token_id")
    if stored is not None and int(stored) != seg_id:
        raise ReleaseError(f"{src / 'config.json'}: seg_token_id={stored}, the tokenizer gives {seg_id}")
    state = dict(release.state)
    rows = int(state["model.embed_tokens.weight"].shape[0])
    notes = []
    if "lm_head.weight" not in state:
        text_cfg = release.config.get("text_config") or {}
        # transformers leaves a field out of config.json when it has its default (True for this one)
        if not release.config.get("tie_word_embeddings", text_cfg.get("tie_word_embeddings", True)):
            raise ReleaseError(f"{src}: no lm_head.weight and tie_word_embeddings is false")
        state["lm_head.weight"] = state["model.embed_tokens.weight"]
        notes.append("lm_head.weight: tied to model.embed_tokens.weight (tie_word_embeddings, not stored)")
    sam_yaml = _sam_yaml(opts.sam_config)
    if not sam_yaml.is_file():
        raise ReleaseError(f"--sam-config {sam_yaml}: file not found")
    with tempfile.TemporaryDirectory(prefix="sparrow-convert-") as tmp:
        staging = Path(tmp)
        tokenizer = _tokenizer(src, seg_id, staging)
        vocab = max(rows, len(tokenizer))
        qcfg = qwen_config(release.config, vocab)
        cfg = _model_config(release.config, qcfg, sam_yaml, opts.dtype, opts.profile)
        tokenizer.save_pretrained(staging / "tokenizer")
        qcfg.save_pretrained(staging / "components" / "llm")
        shutil.copyfile(sam_yaml, staging / "components" / "sam2.yaml")
        torch.manual_seed(0)
        model = SparrowModel(cfg, checkpoint_dir=staging)
        sam_text = (staging / "components" / "sam2.yaml").read_text()
    model.sam_yaml = None
    kit_state = model.state_dict()

    def vocab_rows(t: torch.Tensor) -> torch.Tensor:
        return t if t.shape[0] == vocab else torch.cat([t, t.new_zeros(vocab - t.shape[0], *t.shape[1:])])

    mapped, report = apply_keymap(keymap(), {"release": state}, kit_state, {"vocab": vocab_rows})
    report.notes.extend(notes)
    report.notes.append(
        f"{RELEASE_SEG} (id {seg_id}) is the kit's {KIT_SEG}; {KIT_BOX} added as id {model.box_token_id}"
    )
    if vocab != rows:
        report.notes.append(f"{vocab - rows} embedding rows added (zero) for tokens beyond the stored {rows}")
    return finish_conversion(
        model,
        kit_state,
        mapped,
        report,
        "unipixel",
        src,
        release,
        "host",
        sam_text,
        sam_config=str(sam_yaml),
        token_ids={RELEASE_SEG: seg_id, KIT_SEG: model.seg_token_id, KIT_BOX: model.box_token_id},
    )
