"""Predicted masks on disk in the evaluation-server layout, read for figures and the explorer.

The layout is the one :mod:`sparrow.eval.export` writes and the Ref-YouTube-VOS / MeViS servers read:
``<root>/<video>/<expression>/<frame_name>.png``, the folder names from
:func:`sparrow.data.records.submission_names`, one single-channel 0/255 PNG per frame. A PNG is read as the MeViS
evaluator reads it (:func:`sparrow.eval.png.read_gray_png`): any non-zero luminance is foreground.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sparrow.data.records import VideoRecord, submission_names
from sparrow.eval.png import read_gray_png
from sparrow.storage import DataError


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
        """``<root>/<video>/<expression>``, whether or not it exists."""
        return self.root.joinpath(*submission_names(video_id, expression_id))

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
    """One mask PNG as (H, W) bool (non-zero luminance is foreground); checks the size against ``shape``."""
    mask = read_gray_png(path, "predicted mask") != 0
    if shape is not None and mask.shape != tuple(shape):
        raise DataError(f"{path}: mask is {mask.shape[0]}x{mask.shape[1]}, the video is {shape[0]}x{shape[1]}")
    return mask
