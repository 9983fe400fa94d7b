"""Content-addressed TSF results: one file per (video, expression), keyed by a hash of everything that made it.

The key hashes the video's record and frame bytes, the expression and its referents' records, the TSF config
(with paths replaced by the content they point at) and the fingerprints of the detector, tracker and encoder, so
a changed input or setting never reuses a stale entry, and an unchanged one is never recomputed. Entries are
safetensors files under ``sparrow.paths.cache_dir("tsf")/entries/<k[:2]>/<k>.safetensors``, written atomically;
their metadata ends with a sha256 over the metadata and every tensor's dtype, shape and bytes, so a truncated or
altered file is detected on read (:class:`CorruptEntry`) and recomputed by the pipeline.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sparrow.data.curated import records_fingerprint
from sparrow.paths import cache_dir
from sparrow.storage import atomic_write_bytes, digest_json, sha256_file

#: bump when the entry layout or the computation changes in a way the key cannot see
FORMAT_VERSION = 2


class CorruptEntry(Exception):
    """A cache file that exists but does not pass its checksum (or cannot be parsed)."""


@dataclass
class TSFEntry:
    """TSF of one expression: what was detected and tracked, which crops were taken and which K were kept.

    ``track_boxes`` has one row per frame of the clip (``clip_start`` onwards), NaN where the track was lost.
    ``frame_indices`` are video frame indices of the crops, ``crop_boxes`` the boxes they were cut at (after the
    fallback rules), ``selected`` the crops K-means kept (indices into them; -1 for centroids), ``features`` the
    TSF vectors in K-means centre order and ``crop_features`` every crop's vector (optional, for figures).
    """

    video_id: str
    expression_id: str
    key: str
    keyframe: int | None
    key_box: tuple[float, float, float, float] | None
    key_score: float | None
    key_source: str
    target_object: str | None
    fallbacks: tuple[str, ...]
    clip_start: int
    frame_indices: list[int]
    crop_boxes: np.ndarray
    track_boxes: np.ndarray
    selected: np.ndarray
    features: torch.Tensor
    crop_features: torch.Tensor | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """The entry's index row (JSON-able, no tensors)."""
        return {
            "video_id": self.video_id,
            "expression_id": self.expression_id,
            "key": self.key,
            "keyframe": self.keyframe,
            "key_box": None if self.key_box is None else [round(v, 3) for v in self.key_box],
            "key_score": None if self.key_score is None else round(self.key_score, 6),
            "key_source": self.key_source,
            "target_object": self.target_object,
            "fallbacks": list(self.fallbacks),
            "num_crops": len(self.frame_indices),
            "selected_frames": [self.frame_indices[i] for i in self.selected.tolist() if i >= 0],
            "lost_crop_frames": int(self.meta.get("lost_crop_frames", 0)),
        }

    def track(self) -> list[tuple[float, float, float, float] | None]:
        """Per-clip-frame boxes with None where lost."""
        return [None if np.isnan(row[0]) else tuple(float(v) for v in row) for row in self.track_boxes]


def _digest(meta_json: str, tensors: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256(meta_json.encode())
    for name in sorted(tensors):
        tensor = tensors[name].contiguous()
        digest.update(f"|{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def encode_entry(entry: TSFEntry) -> bytes:
    from safetensors.torch import save

    meta = {
        "format": FORMAT_VERSION,
        "video_id": entry.video_id,
        "expression_id": entry.expression_id,
        "key": entry.key,
        "keyframe": entry.keyframe,
        "key_box": None if entry.key_box is None else list(entry.key_box),
        "key_score": entry.key_score,
        "key_source": entry.key_source,
        "target_object": entry.target_object,
        "fallbacks": list(entry.fallbacks),
        "clip_start": entry.clip_start,
        "frame_indices": entry.frame_indices,
        "extra": entry.meta,
    }
    tensors = {
        "crop_boxes": torch.as_tensor(np.asarray(entry.crop_boxes, dtype=np.float32).reshape(-1, 4)),
        "track_boxes": torch.as_tensor(np.asarray(entry.track_boxes, dtype=np.float32).reshape(-1, 4)),
        "selected": torch.as_tensor(np.asarray(entry.selected, dtype=np.int64).reshape(-1)),
        "features": entry.features.detach().to("cpu", torch.float32).clone(),
    }
    if entry.crop_features is not None:
        tensors["crop_features"] = entry.crop_features.detach().to("cpu", torch.float32).clone()
    meta_json = json.dumps(meta, sort_keys=True, separators=(",", ":"))
    # One metadata key: safetensors writes its metadata map in hash order, and entries must be byte-identical.
    return save(tensors, metadata={"tsf": meta_json + "\n" + _digest(meta_json, tensors)})


def decode_entry(data: bytes, where: str = "entry") -> TSFEntry:
    from safetensors.torch import load

    try:
        size = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + size])
        metadata = header["__metadata__"]
        tensors = load(data)
        meta_json, expected = metadata["tsf"].rsplit("\n", 1)
    except Exception as exc:  # noqa: BLE001 - any parse failure of a cache file means "corrupt"
        raise CorruptEntry(f"{where}: unreadable TSF cache entry ({type(exc).__name__}: {exc})") from exc
    if _digest(meta_json, tensors) != expected:
        raise CorruptEntry(f"{where}: checksum mismatch")
    meta = json.loads(meta_json)
    if meta.get("format") != FORMAT_VERSION:
        raise CorruptEntry(f"{where}: entry format {meta.get('format')} (expected {FORMAT_VERSION})")
    return TSFEntry(
        video_id=meta["video_id"],
        expression_id=meta["expression_id"],
        key=meta["key"],
        keyframe=meta["keyframe"],
        key_box=None if meta["key_box"] is None else tuple(meta["key_box"]),
        key_score=meta["key_score"],
        key_source=meta["key_source"],
        target_object=meta["target_object"],
        fallbacks=tuple(meta["fallbacks"]),
        clip_start=meta["clip_start"],
        frame_indices=list(meta["frame_indices"]),
        crop_boxes=tensors["crop_boxes"].numpy(),
        track_boxes=tensors["track_boxes"].numpy(),
        selected=tensors["selected"].numpy(),
        features=tensors["features"],
        crop_features=tensors.get("crop_features"),
        meta=meta.get("extra", {}),
    )


class TSFStore:
    """The content-addressed entry files under ``root`` (default ``cache_dir("tsf")/entries``)."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root is not None else cache_dir("tsf") / "entries"

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.safetensors"

    def get(self, key: str) -> TSFEntry | None:
        """The entry, or None when absent; raises :class:`CorruptEntry` when present but damaged."""
        path = self.path(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        entry = decode_entry(data, str(path))
        if entry.key != key:
            raise CorruptEntry(f"{path}: holds key {entry.key}")
        return entry

    def put(self, entry: TSFEntry) -> Path:
        path = self.path(entry.key)
        atomic_write_bytes(path, encode_entry(entry))
        return path


# -- keys ----------------------------------------------------------------------------------------------------------


def video_fingerprint(dataset, video_id: str) -> str:
    """sha256 over a video's record and the bytes of its frame files."""
    video = dataset.video(video_id)
    digest = hashlib.sha256(json.dumps(video.to_json(), sort_keys=True).encode())
    for i in range(video.num_frames):
        digest.update(sha256_file(dataset.frame_path(video, i)).encode())
    return digest.hexdigest()


def dataset_fingerprint(dataset, split: str) -> str:
    """The curated records' fingerprint together with the frames of ``split``'s videos."""
    return digest_json(
        [records_fingerprint(dataset.root)]
        + [video_fingerprint(dataset, video.video_id) for video in dataset.iter_videos(split=split)]
    )


def entry_key(video_hash: str, expression: dict, referents: Sequence[dict], config: dict, components: dict) -> str:
    """The content address of one (video, expression) under one configuration."""
    payload = {
        "format": FORMAT_VERSION,
        "video": video_hash,
        "expression": expression,
        "referents": list(referents),
        "config": config,
        "components": components,
    }
    return digest_json(payload)
