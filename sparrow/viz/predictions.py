"""Predicted masks on disk in the evaluation-server layout, read for figures and the explorer.

Layout (the one the Ref-YouTube-VOS / MeViS servers and the released eval scripts use):
``<root>/<video>/<expression>/<frame_name>.png`` with one single-channel 0/255 PNG per frame. Any non-zero pixel
is foreground, so 0/1 and palette PNGs read the same way.

Curated ids are ``video_id = "<source>/<video>"`` and ``expression_id = "<video_id>/<local id>"``, so three
spellings of the folder are accepted, first match wins (:func:`expression_dirs`):
``<root>/<video_id>/<local id>`` (what :func:`write_predictions` writes), ``<root>/<video_id>/<expression_id>``
and the servers' own ``<root>/<video>/<local id>``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from sparrow.data.records import VideoRecord, local_expression_id
from sparrow.storage import DataError, atomic_write_bytes


def expression_dirs(root: Path, video_id: str, expression_id: str) -> list[Path]:
    """The accepted spellings of one expression's folder under ``root``, preferred first (module docstring)."""
    local = local_expression_id(video_id, expression_id)
    video_name = video_id.split("/", 1)[1] if "/" in video_id else video_id
    candidates = [root / video_id / local, root / video_id / str(expression_id), root / video_name / local]
    return list(dict.fromkeys(candidates))


@dataclass(frozen=True)
class PredictedMasks:
    """One expression's predicted masks: (T, H, W) bool, and which frames had a file (absent ones are empty)."""

    masks: np.ndarray
    present: np.ndarray

    @property
    def complete(self) -> bool:
        return bool(self.present.all())

    @property
    def num_missing(self) -> int:
        return int((~self.present).sum())


@dataclass(frozen=True)
class PredictionFolder:
    """A folder of predictions in the server layout, under a display name (e.g. ``"baseline"``, ``"SPARROW"``)."""

    root: Path
    name: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))
        if not self.name:
            object.__setattr__(self, "name", self.root.name)

    def expression_dir(self, video_id: str, expression_id: str) -> Path:
        """The existing folder of this expression, or the preferred spelling when there is none."""
        candidates = expression_dirs(self.root, video_id, expression_id)
        return next((c for c in candidates if c.is_dir()), candidates[0])

    def has(self, video_id: str, expression_id: str) -> bool:
        return self.expression_dir(video_id, expression_id).is_dir()

    def load(self, video: VideoRecord, expression_id: str) -> PredictedMasks | None:
        """The masks of every frame of ``video``; None when this expression has no prediction folder at all.

        A PNG that cannot be decoded or has the wrong size raises :class:`DataError` naming the file.
        """
        folder = self.expression_dir(video.video_id, expression_id)
        if not folder.is_dir():
            return None
        masks = np.zeros((video.num_frames, video.height, video.width), dtype=bool)
        present = np.zeros(video.num_frames, dtype=bool)
        for t, name in enumerate(video.frame_names):
            path = folder / f"{name}.png"
            if not path.is_file():
                continue
            masks[t] = read_mask_png(path, (video.height, video.width))
            present[t] = True
        return PredictedMasks(masks, present)


def read_mask_png(path: str | Path, shape: tuple[int, int] | None = None) -> np.ndarray:
    """One mask PNG as (H, W) bool (any non-zero channel is foreground); checks the size against ``shape``."""
    path = Path(path)
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise DataError(f"{path}: not a readable PNG mask")
    mask = image.any(axis=2) if image.ndim == 3 else image != 0
    if shape is not None and mask.shape != tuple(shape):
        raise DataError(f"{path}: mask is {mask.shape[0]}x{mask.shape[1]}, the video is {shape[0]}x{shape[1]}")
    return mask


def write_mask_png(path: str | Path, mask: np.ndarray) -> None:
    """Write one (H, W) mask as a 0/255 single-channel PNG, atomically."""
    if mask.ndim != 2:
        raise ValueError(f"{path}: expected an (H, W) mask, got shape {mask.shape}")
    ok, buf = cv2.imencode(".png", np.where(mask != 0, 255, 0).astype(np.uint8))
    if not ok:
        raise OSError(f"{path}: PNG encoding failed")
    atomic_write_bytes(path, buf.tobytes())


def write_predictions(root: str | Path, video_id: str, expression_id: str, frame_names: Sequence[str],
                      masks: np.ndarray) -> Path:
    """Write (T, H, W) masks as ``<root>/<video_id>/<local expression id>/<frame_name>.png``; returns the folder."""
    if len(frame_names) != len(masks):
        raise ValueError(f"{len(frame_names)} frame names for {len(masks)} masks ({video_id}/{expression_id})")
    folder = expression_dirs(Path(root), video_id, expression_id)[0]
    for name, mask in zip(frame_names, masks):
        write_mask_png(folder / f"{name}.png", mask)
    return folder
