"""The weights of a Hugging Face folder as the releases wrote them, read without the classes that wrote them.

``pytorch_model.bin`` or ``pytorch_model-0000k-of-0000n.bin`` shards with ``pytorch_model.bin.index.json`` (read
with ``torch.load(weights_only=True)``), or ``model.safetensors`` / its shards with ``model.safetensors.index.json``.
A folder holding both formats is refused: which one the release meant is unclear. Used by the proposer's
``checkpoint-*`` loader (:mod:`sparrow.model.deformable_detr`) and by :mod:`sparrow.convert`.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from sparrow.storage import DataError, read_json

BIN_INDEX = "pytorch_model.bin.index.json"
SAFE_INDEX = "model.safetensors.index.json"


class ReleaseError(DataError):
    """A released folder that cannot be read or converted; the message names the file and the problem."""


def _shards(folder: Path, index_name: str, single: str) -> list[Path] | None:
    index = folder / index_name
    if index.is_file():
        data = read_json(index)
        weight_map = data.get("weight_map") if isinstance(data, dict) else None
        if not isinstance(weight_map, dict) or not weight_map:
            raise ReleaseError(f"{index}: no weight_map")
        names = sorted(set(weight_map.values()))
        missing = [n for n in names if not (folder / n).is_file()]
        if missing:
            raise ReleaseError(f"{index}: shard files missing: {', '.join(missing)}")
        return [folder / n for n in names]
    if (folder / single).is_file():
        return [folder / single]
    return None


def _read_bin(path: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for foreign, truncated or pickled-object files
        raise ReleaseError(f"{path}: not a readable weights file under weights_only=True ({exc})") from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ReleaseError(f"{path}: expected a flat state_dict of tensors")
    return state


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:  # safetensors raises its own error types
        raise ReleaseError(f"{path}: not a readable safetensors file ({exc})") from exc


def read_weights(folder: str | os.PathLike) -> tuple[dict[str, torch.Tensor], list[str]]:
    """(state_dict, the files read) of a released folder in either format, shards merged."""
    folder = Path(folder)
    binary = _shards(folder, BIN_INDEX, "pytorch_model.bin")
    safe = _shards(folder, SAFE_INDEX, "model.safetensors")
    if binary and safe:
        raise ReleaseError(f"{folder}: holds both .bin and .safetensors weights; keep one")
    files = binary or safe
    if not files:
        raise ReleaseError(f"{folder}: no weights (pytorch_model*.bin or model*.safetensors, with their index)")
    reader = _read_bin if binary else _read_safetensors
    state: dict[str, torch.Tensor] = {}
    for path in files:
        part = reader(path)
        twice = sorted(set(part) & set(state))
        if twice:
            raise ReleaseError(f"{path}: keys also in another shard: {', '.join(twice[:5])}")
        state.update(part)
    return state, [p.name for p in files]
