"""Ground truth beside predictions, with per-frame region similarity J and contour accuracy F.

J and F come from :mod:`sparrow.eval.jf` (equal to the official DAVIS-2017 functions), never from a local copy, so
the figures show exactly the numbers the tables report. Predicted and ground-truth stacks are (T, H, W) masks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from sparrow.viz._figures import new_figure
from sparrow.viz.montage import sample_indices
from sparrow.viz.overlay import GT_COLOR, MaskLayer, compose, pred_color


@dataclass(frozen=True)
class FrameScores:
    """Per-frame J and F of one prediction against the ground truth (each a (T,) float array)."""

    j: np.ndarray
    f: np.ndarray

    @property
    def jf(self) -> np.ndarray:
        return (self.j + self.f) / 2.0

    @property
    def mean_j(self) -> float:
        return float(np.mean(self.j))

    @property
    def mean_f(self) -> float:
        return float(np.mean(self.f))

    @property
    def mean_jf(self) -> float:
        return (self.mean_j + self.mean_f) / 2.0


def per_frame_jf(gt: np.ndarray, pred: np.ndarray) -> FrameScores:
    """J and F of every frame (annotation first, as the official tools order them)."""
    from sparrow.eval.jf import contour_accuracy, region_similarity

    if gt.shape != pred.shape or gt.ndim != 3:
        raise ValueError(f"ground truth {gt.shape} and prediction {pred.shape} must be equal (T, H, W) stacks")
    gt = gt.astype(bool, copy=False)
    pred = pred.astype(bool, copy=False)
    j = np.asarray(region_similarity(gt, pred), dtype=np.float64).reshape(len(gt))
    f = np.asarray(contour_accuracy(gt, pred), dtype=np.float64).reshape(len(gt))
    return FrameScores(j, f)


def plot_jf_curves(
    ax,
    scores: Mapping[str, FrameScores],
    marks: Sequence[int] = (),
    colors: Mapping[str, tuple[int, int, int]] | None = None,
) -> None:
    """Per-frame J (solid) and F (dashed) of each prediction on ``ax``; ``marks`` draws thin vertical lines."""
    for i, (name, s) in enumerate(scores.items()):
        color = np.asarray((colors or {}).get(name, pred_color(i))) / 255.0
        x = np.arange(len(s.j))
        ax.plot(x, s.j, "-", color=color, label=f"{name} J (mean {s.mean_j:.3f})")
        ax.plot(x, s.f, "--", color=color, label=f"{name} F (mean {s.mean_f:.3f})")
    for t in marks:
        ax.axvline(t, color="0.6", lw=0.6, zorder=0)
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("frame")
    ax.set_ylabel("J / F")
    ax.grid(alpha=0.3)
    if scores:
        ax.legend(fontsize="x-small", ncols=2, loc="lower left")


def jf_figure(scores: Mapping[str, FrameScores], title: str = "", width: float = 8.0):
    """A Figure of the per-frame J and F curves of one or more predictions."""
    fig = new_figure(width, 2.6)
    ax = fig.add_subplot()
    plot_jf_curves(ax, scores)
    if title:
        ax.set_title(title, fontsize="medium")
    return fig


def compare_figure(
    frames: np.ndarray,
    gt: np.ndarray,
    preds: Mapping[str, np.ndarray] | np.ndarray,
    indices: Sequence[int] | None = None,
    num: int = 6,
    text: str = "",
    title: str = "",
    alpha: float = 0.45,
    panel_width: float = 1.8,
    colors: Mapping[str, tuple[int, int, int]] | None = None,
):
    """Ground truth (top row) beside each prediction (one row each, with the ground truth's outline) on sampled
    frames, with per-frame J and F in every prediction panel's title and, in the bottom row, the J/F curves over
    all frames.

    ``preds`` is one (T, H, W) stack or a mapping name -> stack (e.g. ``{"baseline": a, "SPARROW": b}``);
    ``colors`` overrides the default prediction colours per name.
    """
    if isinstance(preds, np.ndarray):
        preds = {"prediction": preds}
    if frames.shape[:3] != gt.shape:
        raise ValueError(f"frames {frames.shape} and ground truth {gt.shape} disagree")
    scores = {name: per_frame_jf(gt, p) for name, p in preds.items()}
    colors = {name: (colors or {}).get(name, pred_color(i)) for i, name in enumerate(preds)}
    indices = sample_indices(len(frames), num) if indices is None else list(indices)
    cols = len(indices)
    h, w = gt.shape[1:]
    rows = 1 + len(preds)
    fig = new_figure(panel_width * cols, panel_width * h / w * rows * 1.15 + 2.4 + (0.4 if text or title else 0))
    grid = fig.add_gridspec(rows + 1, cols, height_ratios=[h / w * 1.15] * rows + [1.2])
    for c, t in enumerate(indices):
        ax = fig.add_subplot(grid[0, c])
        ax.imshow(
            compose(frames[t], [MaskLayer(gt[t], GT_COLOR, "ground truth")], alpha=alpha), interpolation="nearest"
        )
        ax.set_axis_off()
        ax.set_title(f"GT t={t}", fontsize="x-small")
        for r, (name, pred) in enumerate(preds.items(), start=1):
            ax = fig.add_subplot(grid[r, c])
            # The ground truth's outline stays on the prediction panels so misses and spills read at a glance.
            layers = [MaskLayer(pred[t], colors[name], name), MaskLayer(gt[t], GT_COLOR, fill=False)]
            ax.imshow(compose(frames[t], layers, alpha=alpha), interpolation="nearest")
            ax.set_axis_off()
            s = scores[name]
            ax.set_title(f"{name}: J {s.j[t]:.2f} F {s.f[t]:.2f}", fontsize="x-small")
    ax = fig.add_subplot(grid[rows, :])
    plot_jf_curves(ax, scores, marks=indices, colors=colors)
    heading = "\n".join(s for s in (title, f"“{text}”" if text else "") if s)
    if heading:
        fig.suptitle(heading, fontsize="medium")
    return fig
