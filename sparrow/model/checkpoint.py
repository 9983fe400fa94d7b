"""Checkpoint files: safetensors weights with strict loading, atomic checkpoint directories, and the model folder.

- Weights are one ``model.safetensors`` holding the full state_dict (frozen parts included, so a checkpoint is
  self-contained). Tensors that share storage (tied embeddings) are stored once; the aliases are kept in the
  file's metadata and restored on load.
- ``config.json`` is read field by field against the config dataclasses' types (``"tsf": "false"`` is refused
  naming the file, the field and the expected type, never read as a truthy string).
- Loading is strict: a key set or shape that differs from the model raises :class:`CheckpointError` naming the file,
  the missing keys and the unexpected keys; an empty, truncated or non-safetensors file raises one naming the file.
- ``atomic_directory`` writes a checkpoint into a temporary sibling folder and renames it into place, so a reader
  never sees a half-written checkpoint (an existing folder is swapped out and removed after the rename); the folder
  ends with the mode ``mkdir`` would give (:func:`sparrow.storage.plain_mode`).
- A model folder (:func:`save_model`, :func:`load_model`) holds ``config.json`` (the model config and the stage),
  ``model.safetensors``, the tokenizer and, under ``components/``, the configs that rebuild each pretrained part
  offline (LLM, vision and temporal encoders, SAM2 yaml, proposer spec).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import torch
from torch import nn

from sparrow.model.config import MODEL_STAGES, ModelConfig
from sparrow.storage import DataError, atomic_write_json, plain_mode, read_json

if TYPE_CHECKING:
    from sparrow.model.sparrow_model import SparrowModel

Model = TypeVar("Model", bound="SparrowModel")

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
_ALIASES_KEY = "sparrow_aliases"


class CheckpointError(DataError):
    """A checkpoint that cannot be loaded; the message names the file and the problem."""


def _dedupe(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    kept: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    seen: dict[tuple, str] = {}
    for name, tensor in state.items():
        tensor = tensor.detach()
        key = (
            (
                tensor.untyped_storage().data_ptr(),
                tensor.storage_offset(),
                tuple(tensor.shape),
                tuple(tensor.stride()),
                tensor.dtype,
            )
            if tensor.numel()
            else None
        )
        if key is not None and key in seen:
            aliases[name] = seen[key]
            continue
        if key is not None:
            seen[key] = name
        kept[name] = tensor.contiguous().cpu()
    return kept, aliases


def save_state(module: nn.Module, path: Path) -> None:
    """Write ``module.state_dict()`` to ``path`` (safetensors, atomically)."""
    from safetensors.torch import save

    from sparrow.storage import atomic_write_bytes

    kept, aliases = _dedupe(module.state_dict())
    atomic_write_bytes(path, save(kept, metadata={_ALIASES_KEY: json.dumps(aliases)}))


def read_state(path: Path, prefix: str | None = None) -> dict[str, torch.Tensor]:
    """The state_dict stored in ``path`` (only the keys starting with ``prefix`` when given, the rest not read);
    unreadable files raise :class:`CheckpointError`."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint weights not found")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: checkpoint weights file is empty")
    try:
        state = {}
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = handle.metadata() or {}
            aliases = json.loads(metadata.get(_ALIASES_KEY, "{}"))
            wanted = (lambda key: True) if prefix is None else (lambda key: key.startswith(prefix))
            stored = set(handle.keys())
            needed = {k for k in stored if wanted(k)} | {s for a, s in aliases.items() if wanted(a) and s in stored}
            for key in handle.keys():
                if key in needed:
                    state[key] = handle.get_tensor(key)
    except CheckpointError:
        raise
    except Exception as exc:  # safetensors raises its own error types for truncated or foreign files
        raise CheckpointError(f"{path}: not a readable safetensors checkpoint ({type(exc).__name__}: {exc})") from exc
    for alias, source in aliases.items():
        if not wanted(alias):
            continue
        if source not in state:
            raise CheckpointError(f"{path}: alias {alias!r} points to missing tensor {source!r}")
        state[alias] = state[source]
    return {k: v for k, v in state.items() if wanted(k)}


def load_state_strict(module: nn.Module, path: Path) -> None:
    """Load ``path`` into ``module``; any missing, unexpected or mis-shaped key raises :class:`CheckpointError`."""
    state = read_state(path)
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: config/weights mismatch; missing keys ({len(missing)}): {_preview(missing)}; "
            f"unexpected keys ({len(unexpected)}): {_preview(unexpected)}"
        )
    wrong = [
        f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if tuple(state[k].shape) != tuple(v.shape)
    ]
    if wrong:
        raise CheckpointError(f"{path}: config/weights shape mismatch: {_preview(wrong)}")
    module.load_state_dict(state, strict=True)


def _preview(items: list[str], limit: int = 20) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "") if items else "none"


@contextmanager
def atomic_directory(target: str | os.PathLike):
    """Yield a temporary folder next to ``target``; on success it replaces ``target``."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        tmp.chmod(plain_mode(folder=True))
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
        os.rename(target, old)
    os.rename(tmp, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def save_model(model: SparrowModel, directory: str | os.PathLike) -> Path:
    """Write ``model``'s folder (config, weights, tokenizer, component configs), atomically."""
    directory = Path(directory)
    with atomic_directory(directory) as tmp:
        atomic_write_json(tmp / CONFIG_NAME, {"model": model.cfg.to_json(), "stage": model.stage})
        save_state(model, tmp / WEIGHTS_NAME)
        model.tokenizer.save_pretrained(tmp / "tokenizer")
        comp = tmp / "components"
        model.llm.save_config(comp / "llm")
        if model.spatial.clip is not None:
            model.spatial.save_config(comp / "vision")
        if model.temporal is not None:
            model.temporal.save_config(comp / "temporal")
        if model.sam_yaml is not None:
            from sparrow.model.pixel_decoder import copy_sam_config

            copy_sam_config(model.sam_yaml, comp)
        if model.proposer is not None:
            atomic_write_json(comp / "proposer.json", model.proposer.effective_spec())
    return directory


def load_model(cls: type[Model], directory: str | os.PathLike) -> Model:
    """Rebuild a ``save_model`` folder as ``cls`` with strict weight loading, in eval mode, at its saved stage."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: not a checkpoint directory")
    config_path = directory / CONFIG_NAME
    if not config_path.is_file():
        raise CheckpointError(f"{config_path}: checkpoint config not found")
    try:
        data = read_json(config_path)
        if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
            raise ValueError("no 'model' object")
        cfg = ModelConfig.from_json(data["model"], source=str(config_path))
    except (TypeError, ValueError) as exc:
        reason = str(exc).removeprefix(f"{config_path}: ")
        raise CheckpointError(f"{config_path}: invalid checkpoint config ({reason})") from exc
    stage = data.get("stage", "stage1")
    if stage not in MODEL_STAGES:
        raise CheckpointError(f"{config_path}: field 'stage' must be one of {', '.join(MODEL_STAGES)}, got {stage!r}")
    weights = directory / WEIGHTS_NAME
    if not weights.is_file():
        raise CheckpointError(f"{weights}: checkpoint weights not found")
    model = cls(cfg, checkpoint_dir=directory)
    load_state_strict(model, weights)
    if cfg.precision != "mixed":
        model.set_precision(cfg.precision)  # the loaded float32 modules hold values of the saved precision
    model.configure_stage(stage)
    return model.eval()


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """Parameters per top-level component (LoRA included where injected) and the trainable total."""
    counts: dict[str, int] = {}
    for name, p in model.named_parameters():
        counts[name.split(".")[0]] = counts.get(name.split(".")[0], 0) + p.numel()
    counts["total"] = sum(p.numel() for p in model.parameters())
    counts["trainable"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return counts
