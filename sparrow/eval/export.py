"""Predicted masks in the layouts the official evaluators and servers read.

- MeViS / Ref-YouTube-VOS: one single-channel 0/255 PNG per frame, ``Annotations/<video>/<expression_id>/<frame>.png``,
  zipped. Ref-YouTube-VOS (ReferFormer, MUTR, VideoGLaMM) uploads the zip of the ``Annotations`` folder; MeViS
  expects the video folders at the root of the zip (``zip_submission(..., parent=False)``).
- Ref-DAVIS17: per annotator folder, the expressions' object masks merged into one palette PNG per frame
  (``<folder>/<video>/<frame>.png``): probabilities below 0.5 set to 0, a constant 0.1 background channel first,
  label = argmax (ties to the lowest object), as ReferFormer / VideoGLaMM / SPARROW write them.

Names: a curated ``video_id`` is ``"<source>/<video>"`` and an ``expression_id`` ``"<video_id>/<exp_id>"``; the
server wants the raw ``<video>`` and ``<exp_id>`` (:func:`sparrow.data.records.submission_names`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sparrow.eval.png import write_binary_png, write_index_png

BENCHMARKS = ("mevis", "ref-youtube-vos")


def write_expression_masks(
    annotations_dir: str | Path, video: str, expression: str, frame_names: Sequence[str], masks: np.ndarray
) -> list[Path]:
    """``<annotations_dir>/<video>/<expression>/<frame>.png`` (0/255) for each frame of one expression."""
    masks = np.asarray(masks)
    if masks.ndim != 3 or masks.shape[0] != len(frame_names):
        raise ValueError(f"{video}/{expression}: {len(frame_names)} frame names for masks of shape {masks.shape}")
    folder = Path(annotations_dir) / video / expression
    paths = []
    for name, mask in zip(frame_names, masks):
        path = folder / f"{name}.png"
        write_binary_png(path, mask)
        paths.append(path)
    return paths


def zip_submission(annotations_dir: str | Path, zip_path: str | Path, parent: bool = True) -> Path:
    """Zip an ``Annotations`` folder; ``parent=True`` keeps ``Annotations/`` in the member names (Ref-YouTube-VOS),
        ``parent=False`` puts the video folders at the root (MeViS). Deterministic bytes
    (:func:`sparrow.eval.package.write_zip`); ``sparrow package`` also validates the folder first."""
    from sparrow.eval.package import write_zip

    annotations_dir = Path(annotations_dir)
    files = sorted(p for p in annotations_dir.rglob("*.png") if p.is_file())
    if not files:
        raise ValueError(f"{annotations_dir}: no PNGs to zip")
    prefix = annotations_dir.name + "/" if parent else ""
    return write_zip(((prefix + p.relative_to(annotations_dir).as_posix(), p) for p in files), zip_path)


def merge_objects(object_masks: Sequence[np.ndarray], threshold: float = 0.5, background: float = 0.1) -> np.ndarray:
    """(T, H, W) uint8 labels from per-object (T, H, W) probabilities or binary masks, objects in label order."""
    if not object_masks:
        raise ValueError("no object masks to merge")
    if len(object_masks) > 254:
        raise ValueError(f"{len(object_masks)} objects do not fit in a palette PNG")
    probs = np.stack([np.asarray(m, dtype=np.float32) for m in object_masks])
    probs[probs < threshold] = 0
    stacked = np.concatenate([np.full((1, *probs.shape[1:]), background, np.float32), probs])
    return stacked.argmax(axis=0).astype(np.uint8)


def write_ref_davis_annotator(
    out_root: str | Path, folder: str, video: str, frame_names: Sequence[str], object_masks: Sequence[np.ndarray]
) -> list[Path]:
    """``<out_root>/<folder>/<video>/<frame>.png``: one annotator set's objects merged into palette PNGs."""
    labels = merge_objects(object_masks)
    if labels.shape[0] != len(frame_names):
        raise ValueError(f"{video}: {len(frame_names)} frame names for {labels.shape[0]} frames")
    paths = []
    for name, frame in zip(frame_names, labels):
        path = Path(out_root) / folder / video / f"{name}.png"
        write_index_png(path, frame)
        paths.append(path)
    return paths
