"""Read a Hugging Face folder as the releases wrote it, without the classes that wrote it.

- Weights: ``pytorch_model.bin`` or ``pytorch_model-0000k-of-0000n.bin`` shards with ``pytorch_model.bin.index.json``
  (read with ``torch.load(weights_only=True)``), or ``model.safetensors`` / its shards with
  ``model.safetensors.index.json``. A folder holding both formats is refused: which one the release meant is unclear.
- ``config.json`` is read as plain JSON: its ``model_type`` (``VideoGPT+``, ``ddetr_sam2``) is unknown to the
  installed transformers, so ``AutoConfig`` cannot read it.
- ``generation_config.json`` (optional) is plain JSON too.
- The tokenizer: the ids of the added tokens come from ``added_tokens.json`` (or ``tokenizer_config.json``'s
  ``added_tokens_decoder``) without loading any tokenizer; the tokenizer itself is loaded by transformers, which for
  the released slow SentencePiece files needs the ``sentencepiece`` and ``protobuf`` packages.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sparrow.storage import DataError, read_json

BIN_INDEX = "pytorch_model.bin.index.json"
SAFE_INDEX = "model.safetensors.index.json"


class ReleaseError(DataError):
    """A released folder that cannot be read or converted; the message names the file and the problem."""


@dataclass
class ReleaseFolder:
    """What a released folder holds: its weights, config, generation config and added-token ids."""

    path: Path
    state: dict[str, torch.Tensor]
    config: dict[str, Any]
    generation_config: dict[str, Any] | None = None
    added_tokens: dict[str, int] = field(default_factory=dict)
    weight_files: list[str] = field(default_factory=list)


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


def added_token_ids(folder: str | os.PathLike) -> dict[str, int]:
    """Token -> id of the tokens added on top of the base vocabulary, read from the tokenizer's JSON files."""
    folder = Path(folder)
    ids: dict[str, int] = {}
    config = folder / "tokenizer_config.json"
    if config.is_file():
        for key, entry in (read_json(config).get("added_tokens_decoder") or {}).items():
            if isinstance(entry, dict) and "content" in entry:
                ids[entry["content"]] = int(key)
    added = folder / "added_tokens.json"
    if added.is_file():
        for token, index in read_json(added).items():
            if token in ids and ids[token] != int(index):
                raise ReleaseError(f"{added}: {token} has id {index}, tokenizer_config.json says {ids[token]}")
            ids[token] = int(index)
    return ids


def read_release(folder: str | os.PathLike) -> ReleaseFolder:
    """Read a released folder (weights, config, generation config, added-token ids)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ReleaseError(f"{folder}: not a folder")
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise ReleaseError(f"{config_path}: not found")
    config = read_json(config_path)
    if not isinstance(config, dict):
        raise ReleaseError(f"{config_path}: expected a JSON object")
    generation = folder / "generation_config.json"
    state, files = read_weights(folder)
    return ReleaseFolder(
        path=folder,
        state=state,
        config=config,
        generation_config=read_json(generation) if generation.is_file() else None,
        added_tokens=added_token_ids(folder),
        weight_files=files,
    )


def load_tokenizer(folder: str | os.PathLike):
    """The tokenizer of a folder through transformers (offline); a missing SentencePiece dependency is named."""
    from transformers import AutoTokenizer

    folder = Path(folder)
    try:
        return AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except Exception as exc:  # transformers raises ImportError, ValueError or OSError depending on what is missing
        needs = []
        for module, package in (("sentencepiece", "sentencepiece"), ("google.protobuf", "protobuf")):
            try:
                __import__(module)
            except ImportError:
                needs.append(package)
        hint = f"; reading slow SentencePiece files needs: pip install {' '.join(needs)}" if needs else ""
        raise ReleaseError(f"{folder}: cannot load the tokenizer ({type(exc).__name__}: {exc}){hint}") from exc
