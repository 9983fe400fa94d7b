"""Does a model's mask depend on the referring text? A diagnostic beside the J&F tables (notebook 04).

J&F alone cannot tell a model that segments the referent from one that outputs the same salient blob for every
text of a video: on videos with few objects the blob still overlaps the referent. For every pair of expressions of
the same video whose referents differ (different object sets), this measures the IoU of the two predicted
masks (all frames together) and, for reference, the IoU of the two ground-truth masks. A model that follows the
text has a pair IoU near the ground truth's (near 0 for disjoint referents); a model that ignores it has 1.

Pair IoU says that the masks differ, not that each lands on its own referent. Referent accuracy says that: over the
pairs whose referents are disjoint and both non-empty, each text of the pair is one case, a hit when its predicted
mask has a higher IoU with its own referent than with the other text's referent (all frames together; a tie is a
miss). A model that draws the same mask for both texts hits at most one of the two cases, so text-blind scores
<= 0.5; a model that follows the text scores near 1.
"""

from __future__ import annotations

import itertools
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sparrow.data.curated import CuratedDataset
from sparrow.data.records import submission_names
from sparrow.eval.rvos import read_expression_prediction


@dataclass(frozen=True)
class TextDependence:
    """Mean IoU over pairs of same-video expressions with different referents (predicted and ground truth), and
    referent accuracy over the ``referent_cases`` (two per pair with disjoint, non-empty referents)."""

    pairs: int
    predicted_pair_iou: float | None
    ground_truth_pair_iou: float | None
    referent_cases: int = 0
    referent_accuracy: float | None = None

    @property
    def ignores_text(self) -> bool | None:
        """True when the predicted masks of different referents are (almost) the same masks."""
        return None if self.predicted_pair_iou is None else self.predicted_pair_iou >= 0.95


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = int(np.logical_or(a, b).sum())
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum()) / union


def follows_own_referent(pred: np.ndarray, own: np.ndarray, other: np.ndarray) -> bool:
    """Whether mask ``pred`` has a higher IoU with its own referent ``own`` than with ``other`` (a referent case)."""
    return _iou(pred, own) > _iou(pred, other)


@dataclass(frozen=True)
class TextMask:
    """One expression of a video: its referent's object ids, predicted mask and ground-truth mask (T, H, W)."""

    object_ids: Sequence[str]
    predicted: np.ndarray
    truth: np.ndarray


def text_dependence_of(videos: Iterable[Sequence[TextMask]]) -> TextDependence:
    """:class:`TextDependence` of in-memory masks: one sequence of :class:`TextMask` per video."""
    predicted, truth, hits = [], [], []
    for masks in videos:
        for a, b in itertools.combinations(masks, 2):
            ids_a, ids_b = set(a.object_ids), set(b.object_ids)
            if ids_a == ids_b:
                continue
            predicted.append(_iou(a.predicted, b.predicted))
            truth.append(_iou(a.truth, b.truth))
            if ids_a and ids_b and not ids_a & ids_b and a.truth.any() and b.truth.any():
                hits.append(follows_own_referent(a.predicted, a.truth, b.truth))
                hits.append(follows_own_referent(b.predicted, b.truth, a.truth))
    if not predicted:
        return TextDependence(0, None, None)
    return TextDependence(
        len(predicted),
        float(np.mean(predicted)),
        float(np.mean(truth)),
        len(hits),
        float(np.mean(hits)) if hits else None,
    )


def iter_video_text_masks(
    dataset: CuratedDataset | str | Path,
    pred_root: str | Path,
    source: str,
    split: str,
    videos: Collection[str] | None = None,
) -> Iterator[tuple[str, list[TextMask]]]:
    """``(video_id, [TextMask])`` per video of ``source``/``split`` (only ``videos`` when given): the expressions
    that have a server-layout prediction under ``pred_root`` (``Annotations/``), each mask decoded once, one video
    at a time (full-size masks of a whole split would not fit in memory)."""
    ds = dataset if isinstance(dataset, CuratedDataset) else CuratedDataset(dataset)
    by_video: dict[str, list] = {}
    for exp in ds.iter_expressions(source=source, split=split):
        if videos is None or exp.video_id in videos:
            by_video.setdefault(exp.video_id, []).append(exp)
    for video_id, expressions in by_video.items():
        video = ds.video(video_id)
        masks = []
        for exp in expressions:
            name, exp_name = submission_names(video_id, exp.expression_id)
            pred = read_expression_prediction(
                pred_root, name, exp_name, list(video.frame_names), (video.height, video.width)
            )
            if pred is not None:
                masks.append(TextMask(tuple(exp.object_ids), pred, ds.expression_masks(exp)))
        yield video_id, masks


def text_dependence(
    dataset: CuratedDataset | str | Path, pred_root: str | Path, source: str, split: str
) -> TextDependence:
    """:class:`TextDependence` of the server-layout predictions under ``pred_root`` (``Annotations/``) on the
    expressions of ``source``/``split`` that have a prediction."""
    return text_dependence_of(masks for _, masks in iter_video_text_masks(dataset, pred_root, source, split))
