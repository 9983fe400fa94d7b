"""Read a Hugging Face folder as the releases wrote it, without the classes that wrote it.

- Weights: :func:`sparrow.model.release_files.read_weights` (``.bin`` or safetensors, sharded or not).
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

from sparrow.model.release_files import ReleaseError, read_weights
from sparrow.storage import read_json

__all__ = ["ReleaseError", "ReleaseFolder", "added_token_ids", "load_tokenizer", "read_release", "read_weights"]


@dataclass
class ReleaseFolder:
    """What a released folder holds: its weights, config, generation config and added-token ids."""

    path: Path
    state: dict[str, torch.Tensor]
    config: dict[str, Any]
    generation_config: dict[str, Any] | None = None
    added_tokens: dict[str, int] = field(default_factory=dict)
    weight_files: list[str] = field(default_factory=list)


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
