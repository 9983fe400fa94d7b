"""Generic charts the notebooks share: counts, histograms, loss curves and clusters.

Each function takes plain numbers (mappings, sequences, arrays) and returns a matplotlib Figure; save it with
:func:`sparrow.viz.export.save_figure`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from sparrow.viz._figures import new_figure

Series = Sequence[float] | np.ndarray


def bar_counts(
    counts: Mapping[str, float] | Mapping[str, Mapping[str, float]],
    title: str = "",
    ylabel: str = "count",
    horizontal: bool = False,
    annotate: bool = True,
    log: bool = False,
    width: float | None = None,
):
    """Bars of ``{label: value}``, or grouped bars of ``{group: {series: value}}`` (e.g. per source:
    videos, expressions, Q&A), with the value written on each bar."""
    if not counts:
        raise ValueError("bar_counts needs at least one value")
    first = next(iter(counts.values()))
    grouped = isinstance(first, Mapping)
    groups = list(counts)
    series = list(dict.fromkeys(s for g in counts.values() for s in g)) if grouped else [""]
    fig = new_figure(width or max(4.0, 0.6 * len(groups) * max(1, len(series)) + 1.5), 3.2)
    ax = fig.add_subplot()
    positions = np.arange(len(groups), dtype=float)
    bar_w = 0.8 / len(series)
    for k, name in enumerate(series):
        values = [float(counts[g].get(name, 0)) if grouped else float(counts[g]) for g in groups]
        offset = positions - 0.4 + bar_w * (k + 0.5)
        draw = ax.barh if horizontal else ax.bar
        bars = draw(offset, values, bar_w, label=name or None)
        if annotate:
            ax.bar_label(bars, labels=[f"{v:g}" for v in values], fontsize="x-small", padding=1)
    if horizontal:
        ax.set_yticks(positions, groups)
        ax.set_xlabel(ylabel)
        ax.invert_yaxis()
    else:
        ax.set_xticks(
            positions,
            groups,
            rotation=30 if max(len(g) for g in groups) > 8 else 0,
            ha="right" if max(len(g) for g in groups) > 8 else "center",
        )
        ax.set_ylabel(ylabel)
    if log:
        (ax.set_xscale if horizontal else ax.set_yscale)("log")
    if grouped:
        ax.legend(fontsize="small")
    if title:
        ax.set_title(title, fontsize="medium")
    ax.grid(axis="x" if horizontal else "y", alpha=0.3)
    return fig


def histogram(
    values: Series | Mapping[str, Series],
    bins: int | Sequence[float] = 20,
    title: str = "",
    xlabel: str = "",
    log: bool = False,
    density: bool = False,
):
    """A histogram of ``values`` (or overlaid step histograms of ``{label: values}``)."""
    fig = new_figure(5.0, 3.2)
    ax = fig.add_subplot()
    if isinstance(values, Mapping):
        arrays = {k: np.asarray(v, dtype=float) for k, v in values.items()}
        edges = np.histogram_bin_edges(np.concatenate(list(arrays.values())) if arrays else [0.0], bins=bins)
        for label, array in arrays.items():
            ax.hist(array, bins=edges, histtype="step", lw=1.5, label=f"{label} (n={len(array)})", density=density)
        ax.legend(fontsize="small")
    else:
        array = np.asarray(values, dtype=float)
        ax.hist(array, bins=bins, color="C0", alpha=0.85, density=density)
        ax.text(
            0.98,
            0.95,
            f"n={len(array)}\nmean={array.mean():.3g}\nmedian={np.median(array):.3g}" if len(array) else "n=0",
            transform=ax.transAxes,
            ha="right",
            va="top",
            fontsize="small",
        )
    if log:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density" if density else "count")
    if title:
        ax.set_title(title, fontsize="medium")
    ax.grid(alpha=0.3)
    return fig


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    if window <= 1 or len(values) < window:
        return values
    kernel = np.ones(window) / window
    # Edge-normalised moving average: the first points average over what exists instead of dipping to zero.
    return np.convolve(values, kernel, mode="same") / np.convolve(np.ones_like(values), kernel, mode="same")


def loss_curves(
    curves: Mapping[str, Series | tuple[Series, Series]],
    title: str = "",
    ylabel: str = "loss",
    xlabel: str = "step",
    smooth: int = 1,
    logy: bool = False,
    profile: str | None = None,
):
    """Line plots of ``{name: values}`` or ``{name: (steps, values)}``; ``smooth`` > 1 draws a moving average
    over the faint raw curve. Under the ``smoke`` ``profile`` the curves are raw: a few steps leave nothing to
    average."""
    if profile == "smoke":
        smooth = 1
    fig = new_figure(6.0, 3.4)
    ax = fig.add_subplot()
    for i, (name, curve) in enumerate(curves.items()):
        if isinstance(curve, tuple) and len(curve) == 2:
            steps, values = np.asarray(curve[0], dtype=float), np.asarray(curve[1], dtype=float)
        else:
            values = np.asarray(curve, dtype=float)
            steps = np.arange(len(values), dtype=float)
        if len(steps) != len(values):
            raise ValueError(f"curve {name!r}: {len(steps)} steps for {len(values)} values")
        color = f"C{i}"
        if smooth > 1:
            ax.plot(steps, values, color=color, alpha=0.25, lw=0.8)
            ax.plot(steps, _smooth(values, smooth), color=color, label=name)
        else:
            ax.plot(steps, values, color=color, label=name)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if curves:
        ax.legend(fontsize="small")
    if title:
        ax.set_title(title, fontsize="medium")
    ax.grid(alpha=0.3)
    return fig


def cluster_scatter(
    points: np.ndarray,
    labels: Sequence[int] | np.ndarray,
    highlight: Sequence[int] = (),
    title: str = "",
    annotate: Sequence[str] | None = None,
):
    """2-D points coloured by cluster label, with the ``highlight`` indices (e.g. K-means medoids) ringed."""
    points = np.asarray(points, dtype=float)
    labels = np.asarray(labels)
    if points.ndim != 2 or points.shape[1] != 2 or len(points) != len(labels):
        raise ValueError(f"expected (N, 2) points and N labels, got {points.shape} and {labels.shape}")
    fig = new_figure(4.5, 4.0)
    ax = fig.add_subplot()
    for k in np.unique(labels):
        sel = labels == k
        ax.scatter(points[sel, 0], points[sel, 1], s=18, color=f"C{int(k) % 10}", label=f"cluster {k}")
    if len(highlight):
        h = np.asarray(highlight, dtype=int)
        ax.scatter(points[h, 0], points[h, 1], s=120, facecolors="none", edgecolors="k", lw=1.5, label="medoid")
    if annotate is not None:
        for (x, y), text in zip(points, annotate):
            ax.annotate(text, (x, y), fontsize="xx-small", xytext=(2, 2), textcoords="offset points")
    ax.legend(fontsize="x-small")
    if title:
        ax.set_title(title, fontsize="medium")
    ax.grid(alpha=0.3)
    return fig
