"""Does a model's mask depend on the referring text? A diagnostic beside the J&F tables (notebook 04).

J&F alone cannot tell a model that segments the referent from one that outputs the same salient blob for every
text of a video: on videos with few objects the blob still overlaps the referent. For every pair of expressions of
the same video whose referents differ (different object sets), this measures the IoU of the two predicted
masks (all frames together) and, for reference, the IoU of the two ground-truth masks. A model that follows the
text has a pair IoU near the ground truth's (near 0 for disjoint referents); a model that ignores it has 1.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sparrow.data.curated import CuratedDataset
from sparrow.data.records import submission_names
from sparrow.eval.rvos import read_expression_prediction


@dataclass(frozen=True)
class TextDependence:
    """Mean IoU over pairs of same-video expressions with different referents: predicted and ground truth."""

    pairs: int
    predicted_pair_iou: float | None
    ground_truth_pair_iou: float | None

    @property
    def ignores_text(self) -> bool | None:
        """True when the predicted masks of different referents are (almost) the same masks."""
        return None if self.predicted_pair_iou is None else self.predicted_pair_iou >= 0.95


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = int(np.logical_or(a, b).sum())
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum()) / union


def text_dependence(
    dataset: CuratedDataset | str | Path, pred_root: str | Path, source: str, split: str
) -> TextDependence:
    """:class:`TextDependence` of the server-layout predictions under ``pred_root`` (``Annotations/``) on the
    expressions of ``source``/``split`` that have a prediction."""
    ds = dataset if isinstance(dataset, CuratedDataset) else CuratedDataset(dataset)
    by_video: dict[str, list] = {}
    for exp in ds.iter_expressions(source=source, split=split):
        by_video.setdefault(exp.video_id, []).append(exp)
    predicted, truth = [], []
    for video_id, expressions in by_video.items():
        video = ds.video(video_id)
        masks = {}
        for exp in expressions:
            name, exp_name = submission_names(video_id, exp.expression_id)
            pred = read_expression_prediction(
                pred_root, name, exp_name, list(video.frame_names), (video.height, video.width)
            )
            if pred is not None:
                masks[exp.expression_id] = (exp, pred, ds.expression_masks(exp))  # each decoded once
        for (a, pa, ga), (b, pb, gb) in itertools.combinations(masks.values(), 2):
            if set(a.object_ids) == set(b.object_ids):
                continue
            predicted.append(_iou(pa, pb))
            truth.append(_iou(ga, gb))
    if not predicted:
        return TextDependence(0, None, None)
    return TextDependence(len(predicted), float(np.mean(predicted)), float(np.mean(truth)))
