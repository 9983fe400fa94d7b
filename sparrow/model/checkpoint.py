"""Checkpoint files: safetensors weights with strict loading, and atomic checkpoint directories.

- Weights are one ``model.safetensors`` holding the full state_dict (frozen parts included, so a checkpoint is
  self-contained). Tensors that share storage (tied embeddings) are stored once; the aliases are kept in the
  file's metadata and restored on load.
- Loading is strict: a key set or shape that differs from the model raises :class:`CheckpointError` naming the file,
  the missing keys and the unexpected keys; an empty, truncated or non-safetensors file raises one naming the file.
- ``atomic_directory`` writes a checkpoint into a temporary sibling folder and renames it into place, so a reader
  never sees a half-written checkpoint (an existing folder is swapped out and removed after the rename).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from sparrow.storage import DataError

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
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape),
               tuple(tensor.stride()), tensor.dtype) if tensor.numel() else None
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


def read_state(path: Path) -> dict[str, torch.Tensor]:
    """The state_dict stored in ``path``; unreadable files raise :class:`CheckpointError`."""
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
            for key in handle.keys():
                state[key] = handle.get_tensor(key)
        aliases = json.loads(metadata.get(_ALIASES_KEY, "{}"))
    except CheckpointError:
        raise
    except Exception as exc:  # safetensors raises its own error types for truncated or foreign files
        raise CheckpointError(f"{path}: not a readable safetensors checkpoint ({type(exc).__name__}: {exc})") from exc
    for alias, source in aliases.items():
        if source not in state:
            raise CheckpointError(f"{path}: alias {alias!r} points to missing tensor {source!r}")
        state[alias] = state[source]
    return state


def load_state_strict(module: nn.Module, path: Path) -> None:
    """Load ``path`` into ``module``; any missing, unexpected or mis-shaped key raises :class:`CheckpointError`."""
    state = read_state(path)
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: config/weights mismatch; missing keys ({len(missing)}): {_preview(missing)}; "
            f"unexpected keys ({len(unexpected)}): {_preview(unexpected)}")
    wrong = [f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in expected.items()
             if tuple(state[k].shape) != tuple(v.shape)]
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
