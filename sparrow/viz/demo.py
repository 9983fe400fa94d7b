"""A small curated folder with predictions and TSF tracks, for the explorer's tests, benchmark and browser test.

It is written with the curated record dataclasses (``sparrow.data.records``), so it exercises exactly the reader
the explorer uses on real curated data, at any frame size (128 px and 480x854 for the speed goal). Two shapes move
over a textured background; one prediction folder is close to the ground truth ("SPARROW"), one is shifted
("baseline"), and one expression deliberately has no prediction so the explorer's note can be seen.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from sparrow.data.boxes import mask_to_box
from sparrow.data.records import (
    ExpressionRecord,
    ObjectRecord,
    VideoRecord,
    submission_names,
)
from sparrow.data.rle import encode_rle
from sparrow.eval.export import write_expression_masks
from sparrow.storage import atomic_write_json, write_jsonl


@dataclass(frozen=True)
class DemoSet:
    """Where :func:`build_demo_set` wrote the curated folder, the two prediction folders and the tracks."""

    curated: Path
    baseline: Path
    sparrow: Path
    tracks: Path

    @property
    def predictions(self) -> dict[str, Path]:
        return {"baseline": self.baseline, "SPARROW": self.sparrow}


def _shapes(t: int, num_frames: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:height, 0:width]
    progress = t / max(1, num_frames - 1)
    r = max(3, min(height, width) // 7)
    cx, cy = (0.2 + 0.6 * progress) * width, 0.35 * height
    circle = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
    sx, sy = (0.75 - 0.5 * progress) * width, 0.7 * height
    square = (np.abs(xx - sx) <= r) & (np.abs(yy - sy) <= r * 0.8)
    return circle, square & ~circle


def build_demo_set(
    root: str | Path, height: int = 128, width: int = 128, num_frames: int = 12, num_videos: int = 2, seed: int = 0
) -> DemoSet:
    """Write the demo set under ``root`` (curated/, pred_baseline/, pred_sparrow/, tracks/); returns its paths."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    curated = root / "curated"
    out = DemoSet(curated, root / "pred_baseline", root / "pred_sparrow", root / "tracks")
    videos, objects, expressions = [], [], []
    for v in range(num_videos):
        vid = f"demo/video{v}"
        split = "valid" if v % 2 == 0 else "train"
        frame_names = [f"{5 * i:05d}" for i in range(num_frames)]
        base = rng.integers(40, 200, size=(max(2, height // 16), max(2, width // 16), 3)).astype(np.uint8)
        background = cv2.resize(base, (width, height), interpolation=cv2.INTER_CUBIC)
        circles, squares, paths = [], [], []
        for t, name in enumerate(frame_names):
            circle, square = _shapes(t + v, num_frames + num_videos, height, width)
            frame = background.copy()
            frame[circle] = (200, 60, 40)
            frame[square] = (40, 90, 200)
            path = curated / "frames" / vid / f"{name}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(path), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
            paths.append(str(path.relative_to(curated)))
            circles.append(circle)
            squares.append(square)
        videos.append(VideoRecord(vid, "demo", split, paths, frame_names, height, width, 6.0).to_json())
        for oid, stack, category in (("1", circles, "circle"), ("2", squares, "square")):
            objects.append(
                ObjectRecord(
                    vid,
                    oid,
                    category,
                    [encode_rle(m) if m.any() else None for m in stack],
                    [mask_to_box(m) for m in stack],
                ).to_json()
            )
        exps = [
            ExpressionRecord(f"{vid}/0", vid, "the red circle moving to the right", ["1"], "referring"),
            ExpressionRecord(f"{vid}/1", vid, "the blue square moving left", ["2"], "referring"),
            ExpressionRecord(f"{vid}/2", vid, "both shapes", ["1", "2"], "referring"),
        ]
        expressions += [e.to_json() for e in exps]
        gt = {"1": np.stack(circles), "2": np.stack(squares)}
        shift = max(2, width // 20)
        for e in exps[:2]:
            masks = np.zeros_like(gt["1"])
            for oid in e.object_ids:
                masks |= gt[oid]
            eroded = np.stack([cv2.erode(m.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0 for m in masks])
            video, expression = submission_names(vid, e.expression_id)
            write_expression_masks(out.sparrow, video, expression, frame_names, eroded)
            write_expression_masks(out.baseline, video, expression, frame_names, np.roll(masks, shift, axis=2))
            boxes = [mask_to_box(m) for m in masks]
            atomic_write_json(
                out.tracks / video / f"{expression}.json",
                {"format": "xyxy", "boxes": boxes, "crop_frames": [0, num_frames // 2]},
            )
    write_jsonl(curated / "videos.jsonl", videos)
    write_jsonl(curated / "objects.jsonl", objects)
    write_jsonl(curated / "expressions.jsonl", expressions)
    write_jsonl(curated / "qa.jsonl", [])
    atomic_write_json(curated / "meta.json", {"sources": ["demo"], "note": "sparrow.viz.demo.build_demo_set"})
    return out
