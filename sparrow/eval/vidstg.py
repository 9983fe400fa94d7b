"""VidSTG spatio-temporal grounding metrics (docs/evaluation.md §7).

Two protocols:

- **MLLM-style mIoU** (VideoGLaMM / SPARROW ``eval_grounding.py``, the number in the paper's table): on the frames of
  the ground-truth tube, the predicted mask becomes a box (connected blobs under 20 pixels removed, 4-connectivity
  as ``skimage.morphology.remove_small_objects``; ``masks_to_boxes`` with the last pixel index as max; an empty mask
  is ``[1e8, 1e8, 0, 0]``), compared with the ground-truth box by continuous box IoU (no +1). Per video the mean
  over the tube frames (``gt_viou``, denominator floored at 1), then the mean over videos, per sentence type, with
  ``gt_viou@0.3/0.5`` (strictly greater).
- **TubeDETR** (``datasets/vidstg_eval.py``): frame sampling, m_tIoU, m_vIoU, vIoU@0.3/0.5 and the gt_viou
  variants, per sentence type.

Official code silently drops a video whose prediction is missing (MLLM) or raises (TubeDETR). Here a missing
prediction raises for TubeDETR, and for the MLLM protocol either scores 0 and is listed (``missing="zero"``,
default) or is dropped and listed (``missing="drop"``, the official number).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from sparrow.data.boxes import mask_box
from sparrow.storage import DataError

EMPTY_BOX = (1e8, 1e8, 0.0, 0.0)
THRESHOLDS = (0.3, 0.5)


# ----------------------------------------------------------------------------------------------------------------
# Boxes
# ----------------------------------------------------------------------------------------------------------------
def remove_small_blobs(mask: np.ndarray, min_size: int = 20) -> np.ndarray:
    """Drop 4-connected components smaller than ``min_size`` pixels (``remove_small_objects`` defaults)."""
    from scipy import ndimage

    mask = np.asarray(mask) != 0
    labels, count = ndimage.label(mask, structure=ndimage.generate_binary_structure(2, 1))
    if count == 0:
        return mask
    sizes = np.bincount(labels.ravel())
    keep = sizes >= min_size
    keep[0] = False
    return keep[labels]


def mask_to_box_inclusive(mask: np.ndarray) -> tuple[float, float, float, float]:
    """``torchvision.ops.masks_to_boxes``: [x_min, y_min, x_max, y_max], max = last pixel index (no +1)."""
    box = mask_box(mask, inclusive=True)
    return EMPTY_BOX if box is None else box


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """TubeDETR ``np_box_iou`` for one pair: continuous coordinates, area (x2-x1)(y2-y1), no +1.

    A pair with no area at all (union 0, where the official division gives NaN) scores 0.
    """
    ax1, ay1, ax2, ay2 = (float(v) for v in a)
    bx1, by1, bx2, by2 = (float(v) for v in b)
    inter = max(0.0, min(ax2, bx2) - max(ax1, bx1)) * max(0.0, min(ay2, by2) - max(ay1, by1))
    union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter
    return inter / union if union > 0 else 0.0


# ----------------------------------------------------------------------------------------------------------------
# MLLM-style mIoU
# ----------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GroundingSample:
    """One sentence: ground-truth boxes (xyxy) on the sampled frames of its tube, and the predicted masks.

    ``pred_masks`` has one (H, W) mask (or None for no mask) per entry of ``gt_boxes``; ``pred_masks=None`` is a
    missing prediction. ``tube`` (inclusive indices into these frames) restricts the average; None = all.
    """

    video_id: str
    qtype: str
    gt_boxes: Sequence[Sequence[float]]
    pred_masks: Sequence[np.ndarray | None] | None
    tube: tuple[int, int] | None = None


@dataclass
class GroundingResult:
    per_video: dict[str, float]
    miou: dict[str, float]  # qtype -> mean over videos
    recall: dict[str, dict[float, float]]  # qtype -> threshold -> fraction of videos with mIoU > threshold
    counts: dict[str, int]
    missing: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)


def video_miou(
    gt_boxes: Sequence[Sequence[float]],
    pred_masks: Sequence[np.ndarray | None],
    tube: tuple[int, int] | None = None,
    min_size: int = 20,
) -> float:
    """``gt_viou`` of one video: mean box IoU over the tube frames (inclusive), denominator at least 1."""
    if len(pred_masks) != len(gt_boxes):
        raise DataError(f"{len(pred_masks)} predicted masks for {len(gt_boxes)} ground-truth frames")
    start, end = tube if tube is not None else (0, len(gt_boxes) - 1)
    total = 0.0
    frames = range(start, end + 1)
    for i in frames:
        mask = pred_masks[i]
        box = EMPTY_BOX if mask is None else mask_to_box_inclusive(remove_small_blobs(mask, min_size))
        total += box_iou(box, gt_boxes[i])
    return total / max(len(frames), 1)


def mllm_grounding_miou(
    samples: Iterable[GroundingSample], missing: str = "zero", min_size: int = 20
) -> GroundingResult:
    if missing not in ("zero", "drop"):
        raise ValueError(f"missing must be 'zero' or 'drop', got {missing!r}")
    per_video: dict[str, float] = {}
    by_type: dict[str, list[float]] = defaultdict(list)
    missing_ids, dropped = [], []
    for s in samples:
        if s.video_id in per_video:
            raise DataError(f"video {s.video_id} appears twice")
        if s.pred_masks is None:
            missing_ids.append(s.video_id)
            if missing == "drop":
                dropped.append(s.video_id)
                continue
            value = 0.0
        else:
            try:
                value = video_miou(s.gt_boxes, s.pred_masks, s.tube, min_size)
            except DataError as exc:
                raise DataError(f"video {s.video_id}: {exc}") from exc
        per_video[s.video_id] = value
        by_type[s.qtype].append(value)
    if not per_video:
        raise DataError("no videos to evaluate")
    miou = {q: float(np.mean(v)) for q, v in by_type.items()}
    recall = {q: {th: float(np.mean(np.array(v) > th)) for th in THRESHOLDS} for q, v in by_type.items()}
    return GroundingResult(per_video, miou, recall, {q: len(v) for q, v in by_type.items()}, missing_ids, dropped)


# ----------------------------------------------------------------------------------------------------------------
# TubeDETR
# ----------------------------------------------------------------------------------------------------------------
def sample_frame_ids(start: int, end: int, video_fps: float, fps: float = 5, video_max_len: int = 200) -> list[int]:
    """TubeDETR's frame sampling over [start, end): keep f when int(last * r) < int(f * r), r = fps / video_fps."""
    rate = fps / video_fps
    ids = [start]
    for f in range(start, end):
        if int(ids[-1] * rate) < int(f * rate):
            ids.append(f)
    if len(ids) > video_max_len:
        ids = [ids[(j * len(ids)) // video_max_len] for j in range(video_max_len)]
    return ids


@dataclass(frozen=True)
class TubeSample:
    """One sentence for TubeDETR's metrics: sampled frame ids, tubes [start, end) and boxes per frame id."""

    video_id: str
    qtype: str
    frame_ids: Sequence[int]
    gt_tube: tuple[int, int]
    gt_boxes: dict[int, Sequence[float]]  # sampled frames inside the ground-truth tube
    pred_tube: tuple[int, int]
    pred_boxes: dict[int, Sequence[float]]


@dataclass
class TubeResult:
    per_video: dict[str, dict[str, float]]  # tiou, viou, gt_viou
    means: dict[str, dict[str, float]]  # qtype -> m_tIoU, m_vIoU, vIoU@0.3, vIoU@0.5, m_gt_vIoU, gt_vIoU@...


def tube_scores(s: TubeSample) -> dict[str, float]:
    (gs, ge), (ps, pe) = s.gt_tube, s.pred_tube
    max_start, min_end = max(gs, ps), min(ge, pe)
    min_start, max_end = min(gs, ps), max(ge, pe)
    if min_end <= max_start:
        tiou = 0.0
    else:
        inter = min_end - max_start
        tiou = inter / ((ge - gs) + (pe - ps) - inter)
    union_frames = [f for f in s.frame_ids if min_start <= f < max_end]
    inter_frames = {f for f in s.frame_ids if max_start <= f < min_end}
    viou = gt_viou = 0.0
    for f, gt in s.gt_boxes.items():
        if f not in s.pred_boxes:
            raise DataError(f"video {s.video_id}: no predicted box for frame {f}")
        iou = box_iou(s.pred_boxes[f], gt)
        if f in inter_frames:
            viou += iou
        gt_viou += iou
    return {"tiou": tiou, "viou": viou / max(len(union_frames), 1), "gt_viou": gt_viou / max(len(s.gt_boxes), 1)}


def tubedetr_metrics(samples: Iterable[TubeSample]) -> TubeResult:
    per_video: dict[str, dict[str, float]] = {}
    by_type: dict[str, list[dict[str, float]]] = defaultdict(list)
    for s in samples:
        scores = tube_scores(s)
        per_video[s.video_id] = scores
        by_type[s.qtype].append(scores)
    if not per_video:
        raise DataError("no videos to evaluate")
    means = {}
    for q, rows in by_type.items():
        t = np.array([r["tiou"] for r in rows])
        v = np.array([r["viou"] for r in rows])
        g = np.array([r["gt_viou"] for r in rows])
        out = {"m_tIoU": float(t.mean()), "m_vIoU": float(v.mean()), "m_gt_vIoU": float(g.mean())}
        for th in THRESHOLDS:
            out[f"vIoU@{th}"] = float(np.mean(v > th))
            out[f"gt_vIoU@{th}"] = float(np.mean(g > th))
        means[q] = out
    return TubeResult(per_video, means)
