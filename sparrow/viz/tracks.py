"""TSF tracks on disk (per-frame target boxes and the frames whose crops K-means picked), read for display.

Accepted files:

- ``.txt``: the CLDTracker / pytracking output, one box line per frame, read by the TSF pipeline's own reader
  (:func:`sparrow.tsf.tracking.read_boxes_txt` and ``boxes_for_frames``: the released ``--tsf_boxes_txt`` rules,
  xyxy vs xywh by vote, frame i uses line ``min(i, L - 1)``); a degenerate box is shown as a lost target.
- ``.json``: either a list with one ``[x0, y0, x1, y1]`` box (exclusive max) or null per frame, or an object
  ``{"boxes": [...], "format": "xyxy" | "xywh", "crop_frames": [...]}``.

A :class:`TrackFolder` finds the file of an expression as ``<root>/<folder>.{json,txt}`` for each spelling of the
expression folder that prediction folders accept (:func:`sparrow.viz.predictions.expression_dirs`), else the
per-video file ``<root>/<video_id>.{json,txt}`` or ``<root>/<video>.txt`` that SPARROW's ``--tsf_boxes_txt`` reads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sparrow.storage import DataError, read_json

Box = list[float]


@dataclass(frozen=True)
class Track:
    """Per-frame boxes ``[x0, y0, x1, y1]`` (exclusive max) or None, and the medoid crop frames."""

    boxes: tuple[Box | None, ...]
    crop_frames: tuple[int, ...] = ()
    source: str = ""

    def fitted(self, num_frames: int) -> "Track":
        """The track cut or padded (with None: no box) to ``num_frames``."""
        boxes = tuple(self.boxes[:num_frames]) + (None,) * max(0, num_frames - len(self.boxes))
        return Track(boxes, tuple(f for f in self.crop_frames if 0 <= f < num_frames), self.source)


def _xywh_to_xyxy(values: list[float]) -> Box | None:
    x, y, w, h = values
    if w <= 0 or h <= 0:
        return None
    return [x, y, x + w, y + h]


def _parse_box(item: Any, fmt: str, where: str) -> Box | None:
    if item is None:
        return None
    if not isinstance(item, (list, tuple)) or len(item) != 4:
        raise DataError(f"{where}: a box is 4 numbers or null, got {str(item)[:60]}")
    try:
        values = [float(v) for v in item]
    except (TypeError, ValueError):
        raise DataError(f"{where}: box {item} is not numeric") from None
    if not all(math.isfinite(v) for v in values):
        raise DataError(f"{where}: box {item} is not finite")
    if fmt == "xywh":
        return _xywh_to_xyxy(values)
    if values[2] <= values[0] or values[3] <= values[1]:
        return None
    return values


def read_track(path: str | Path, num_frames: int, width: int, height: int) -> Track:
    """Read a TSF track file (``.txt`` or ``.json``) for a video of ``num_frames`` frames of ``width`` x ``height``.

    Malformed content raises :class:`DataError` naming the file.
    """
    path = Path(path)
    if path.suffix == ".txt":
        from sparrow.tsf.tracking import boxes_for_frames, read_boxes_txt

        rows = read_boxes_txt(path)
        boxes = [None if b is None or b[2] <= b[0] or b[3] <= b[1] else [float(v) for v in b]
                 for b in boxes_for_frames(rows, num_frames, width, height)]
        return Track(tuple(boxes), (), str(path))
    if path.suffix == ".json":
        data = read_json(path)
        fmt, crop_frames = "xyxy", []
        if isinstance(data, dict):
            fmt = data.get("format", "xyxy")
            crop_frames = data.get("crop_frames", [])
            data = data.get("boxes")
        if fmt not in ("xyxy", "xywh"):
            raise DataError(f"{path}: unknown box format {fmt!r} (xyxy or xywh)")
        if not isinstance(data, list):
            raise DataError(f"{path}: expected a list of boxes or an object with 'boxes'")
        boxes = [_parse_box(item, fmt, f"{path} frame {i}") for i, item in enumerate(data)]
        if not isinstance(crop_frames, list) or not all(isinstance(f, int) for f in crop_frames):
            raise DataError(f"{path}: crop_frames must be frame indices (ints)")
        return Track(tuple(boxes), tuple(crop_frames), str(path)).fitted(num_frames)
    raise DataError(f"{path}: a track file is .txt (x,y,w,h lines) or .json")


@dataclass(frozen=True)
class TrackFolder:
    """TSF track files per expression (or per video) under ``root``."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    def find(self, video_id: str, expression_id: str) -> Path | None:
        from sparrow.viz.predictions import expression_dirs

        video_name = video_id.split("/", 1)[1] if "/" in video_id else video_id
        stems = expression_dirs(self.root, video_id, expression_id) + [self.root / video_id, self.root / video_name]
        for stem in stems:
            for suffix in (".json", ".txt"):
                candidate = stem.with_name(stem.name + suffix)
                if candidate.is_file():
                    return candidate
        return None

    def load(self, video_id: str, expression_id: str, num_frames: int, width: int, height: int) -> Track | None:
        path = self.find(video_id, expression_id)
        return None if path is None else read_track(path, num_frames, width, height)
