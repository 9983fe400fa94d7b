"""MeViS / Ref-YouTube-VOS per-expression J&F from a curated dataset and predicted masks on disk.

As MeViS ``tools/eval_mevis.py`` (docs/evaluation.md §6.1): the ground truth of an expression is the union of its
referents' masks on every frame of the video; the prediction is ``<pred_root>/<video>/<exp_id>/<frame>.png`` read
as grayscale, any non-zero pixel foreground; per expression ``j = mean_t J_t`` and ``f = mean_t F_t`` over all
frames (no void, no first/last dropping, tolerance 0.008); then ``J = mean_expr j``, ``F = mean_expr f`` and
``J&F = (J + F) / 2``. Ref-YouTube-VOS's server is understood to do the same.

A prediction folder that does not exist is an error. A missing prediction (video or expression folder) inside it
scores j = f = 0, as MeViS does for a missing video, and is listed in the result. A missing or unreadable frame inside an existing expression folder, a size mismatch, or
files that are not frames of the video are errors naming the video, expression and frame (MeViS' worker would
die and silently drop the expression).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sparrow.data.curated import CuratedDataset
from sparrow.data.records import submission_names
from sparrow.eval.jf import jf_per_frame
from sparrow.eval.png import read_gray_png
from sparrow.storage import DataError


@dataclass(frozen=True)
class ExpressionScore:
    video_id: str
    expression_id: str
    j: float
    f: float
    missing: bool = False


@dataclass
class RvosResult:
    expressions: list[ExpressionScore]
    j: float
    f: float
    jf: float
    missing: list[str] = field(default_factory=list)  # "<video>/<exp_id>" scored 0
    warnings: list[str] = field(default_factory=list)


def read_expression_prediction(
    pred_root: str | Path,
    video: str,
    expression: str,
    frame_names: list[str],
    shape: tuple[int, int],
    allow_extra_frames: bool = False,
) -> np.ndarray | None:
    """(T, H, W) bool prediction of one expression, or None when its folder is absent (a missing prediction)."""
    folder = Path(pred_root) / video / expression
    if not folder.is_dir():
        return None
    if not allow_extra_frames:
        known = set(frame_names)
        extra = sorted(p.name for p in folder.iterdir() if p.suffix == ".png" and p.stem not in known)
        if extra:
            raise DataError(
                f"video {video}, expression {expression}: {', '.join(extra[:5])}"
                f"{' ...' if len(extra) > 5 else ''} are not frames of the video "
                f"(expected names like {frame_names[0]}.png)"
            )
    out = np.zeros((len(frame_names), *shape), bool)
    for i, name in enumerate(frame_names):
        what = f"video {video}, expression {expression}, frame {name}"
        arr = read_gray_png(folder / f"{name}.png", what)
        if arr.shape != shape:
            raise DataError(f"{what}: prediction size {arr.shape} differs from the frame size {shape}")
        out[i] = arr != 0
    return out


def aggregate_jf(j: list[float], f: list[float]) -> tuple[float, float, float]:
    """(J, F, J&F) of per-expression j and f: the mean of each over the expressions, then ``(J + F) / 2``."""
    j_all, f_all = float(np.mean(j)), float(np.mean(f))
    return j_all, f_all, (j_all + f_all) / 2


def missing_warning(missing: list[str], total: int, what: str = "expressions") -> list[str]:
    """The one-line warning listing predictions scored 0 (empty when none is missing)."""
    if not missing:
        return []
    return [
        f"{len(missing)} of {total} {what} have no prediction and score 0: "
        f"{', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''}"
    ]


def evaluate_rvos(
    dataset: CuratedDataset | str | Path,
    pred_root: str | Path,
    source: str | None = None,
    split: str | None = None,
    expression_ids: Iterable[str] | None = None,
    allow_extra_frames: bool = False,
    device: Any | None = None,
) -> RvosResult:
    """Per-expression J&F of the curated expressions (optionally one source/split or a list of ids)."""
    ds = dataset if isinstance(dataset, CuratedDataset) else CuratedDataset(dataset)
    if not Path(pred_root).is_dir():
        raise DataError(f"prediction folder {pred_root} does not exist")
    wanted = None if expression_ids is None else set(expression_ids)
    scores: list[ExpressionScore] = []
    missing: list[str] = []
    for exp in ds.iter_expressions(source=source, split=split):
        if wanted is not None and exp.expression_id not in wanted:
            continue
        video = ds.video(exp.video_id)
        if video.num_frames == 0:
            raise DataError(f"video {exp.video_id}: no frames")
        video_name, exp_name = submission_names(exp.video_id, exp.expression_id)
        pred = read_expression_prediction(
            pred_root, video_name, exp_name, list(video.frame_names), (video.height, video.width), allow_extra_frames
        )
        if pred is None:
            missing.append(f"{video_name}/{exp_name}")
            scores.append(ExpressionScore(exp.video_id, exp.expression_id, 0.0, 0.0, missing=True))
            continue
        gt = ds.expression_masks(exp)
        j, f = jf_per_frame(gt, pred, device=device)
        scores.append(ExpressionScore(exp.video_id, exp.expression_id, float(j.mean()), float(f.mean())))
    if wanted is not None:
        unknown = wanted - {s.expression_id for s in scores}
        if unknown:
            raise DataError(f"{ds.root}: unknown expression ids {sorted(unknown)[:5]}")
    if not scores:
        raise DataError(f"{ds.root}: no expressions to evaluate (source={source!r}, split={split!r})")
    j_all, f_all, jf = aggregate_jf([s.j for s in scores], [s.f for s in scores])
    return RvosResult(scores, j_all, f_all, jf, missing, missing_warning(missing, len(scores)))
