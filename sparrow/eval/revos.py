"""ReVOS: J, F, accuracy A and robustness R, referring / reasoning / overall (docs/evaluation.md §6.4).

As VISA's ``tools/eval_revos.py`` (the same code in UniPixel; Sa2VA's copy reads RLE JSON predictions):

- Ground truth of an expression: the sum, as uint8, of its ``anno_id`` masks of ``mask_dict.json`` per frame (two
  overlapping referents give 2); the foreground of a video: ``mask_dict_foreground.json`` (channels summed).
- Prediction: the raw ``cv2.IMREAD_GRAYSCALE`` values of ``<pred>/<video>/<exp_id>/<frame>.png`` (or the decoded
  RLE, 0/1). J and F (§1-§4) take any non-zero pixel as foreground.
- A per frame: ``mean(gt == pred)`` on those raw uint8 values; R per frame:
  ``max(1 - sum((1 - gt) * pred) / (sum(foreground) + 1e-6), 0)`` in uint8 arithmetic. Both therefore depend on
  the stored values: with 0/255 PNGs a foreground pixel never counts as agreeing and each false-positive pixel
  counts 255 times, exactly as the official scorer computes it; 0/1 PNGs or RLE give the intended values.
- Per expression the frame means, each rounded as ``round(100 * x, 2)``; per type (``type_id`` 0 referring,
  1 reasoning) the mean of the rounded values and ``JF = (J + F) / 2``; overall = the mean of the two types.
  Expressions of other types (2: no target) are scored but enter no table.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

TYPES = {0: "referring", 1: "reasoning"}
METRICS = ("J", "F", "A", "R", "JF")


def accuracy(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Per-frame pixel agreement of (T, H, W) uint8 ground truth and prediction values."""
    return np.array([np.mean(g == p) for g, p in zip(gt, pred)])


def robustness(gt: np.ndarray, pred: np.ndarray, foreground: np.ndarray) -> np.ndarray:
    """Per-frame robustness: 1 minus the prediction outside the ground truth over the video's foreground area."""
    out = []
    for g, p, fg in zip(gt, pred, foreground):
        neg = ((1 - g) * p).sum()
        pos = fg.sum()
        out.append(max(1 - neg / (pos + 1e-6), 0.0))
    return np.array(out)


@dataclass(frozen=True)
class RevosScore:
    """One expression: frame means of J, F, A, R (fractions)."""

    j: float
    f: float
    a: float
    r: float


def rounded(score: RevosScore) -> dict[str, float]:
    """The official per-expression row: each value ``round(100 * x, 2)``."""
    return {
        "J": round(100 * score.j, 2),
        "F": round(100 * score.f, 2),
        "JF": round(100 * (score.j + score.f) / 2, 2),
        "A": round(100 * score.a, 2),
        "R": round(100 * score.r, 2),
    }


def revos_tables(scores: Sequence[tuple[int, RevosScore]]) -> dict[str, dict[str, float]]:
    """``{"referring" | "reasoning" | "overall": {J, F, A, R, JF}}`` in percent from (type_id, score) pairs."""
    rows = [(t, rounded(s)) for t, s in scores]
    tables: dict[str, dict[str, float]] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)  # a type without expressions is NaN, as official
        for type_id, name in TYPES.items():
            table = {m: float(np.array([r[m] for t, r in rows if t == type_id]).mean()) for m in ("J", "F", "A", "R")}
            table["JF"] = (table["J"] + table["F"]) / 2
            tables[name] = table
    tables["overall"] = {m: (tables["referring"][m] + tables["reasoning"][m]) / 2 for m in METRICS}
    return {name: {m: t[m] for m in METRICS} for name, t in tables.items()}
