"""Charts of notebook 04: the paper's +SPARROW gains beside the reproduced ones, and the ablation steps."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from sparrow.viz._figures import new_figure

GainSeries = Mapping[str, Mapping[str, tuple[float | None, float | None, float]]]
ControlSeries = Mapping[str, Mapping[str, tuple[float | None, float | None]]]


def gains_figure(
    gains: GainSeries,
    title: str = "",
    labels: tuple[str, str] = ("paper", "reproduced"),
    control: ControlSeries | None = None,
    control_label: str = "vs control",
):
    """One panel per host: per column, the paper's gain ((host + SPARROW) − host) and the reproduced mean gain
    with its seed-to-seed standard deviation as an error bar. A column without a reproduced value is marked "n/a".

    ``gains``: ``{host: {column: (reproduced mean, reproduced std, paper gain)}}``
    (:func:`sparrow.experiments.table_report.gain_series`); ``control``: ``{host: {column: (mean, std)}}`` of
    + SPARROW minus the control, drawn as a third bar (:func:`sparrow.experiments.table_report.control_gain_series`)."""
    if not gains:
        raise ValueError("gains_figure needs at least one host")
    hosts = list(gains)
    columns = list(next(iter(gains.values())))
    fig = new_figure(max(6.0, 1.1 * len(columns) + 2.0), 2.6 * len(hosts) + 0.6)
    axes = fig.subplots(len(hosts), 1, sharex=True, squeeze=False)[:, 0]
    x = np.arange(len(columns), dtype=float)
    width = 0.4 if control is None else 0.27
    for ax, host in zip(axes, hosts):
        rows = [gains[host][c] for c in columns]
        paper = np.array([r[2] for r in rows], dtype=float)
        ax.bar(x - width / 2 if control is None else x - width, paper, width, label=labels[0], color="0.6")
        measured = [(rows, labels[1], x + width / 2 if control is None else x, ("C2", "C3"))]
        if control is not None:
            measured.append(([control[host][c] for c in columns], control_label, x + width, ("C0", "C1")))
        for series, label, where, colors in measured:
            mean = np.array([np.nan if r[0] is None else r[0] for r in series], dtype=float)
            std = np.array([0.0 if r[1] is None else r[1] for r in series], dtype=float)
            bars = ax.bar(
                where,
                np.nan_to_num(mean),
                width,
                yerr=np.where(np.isnan(mean), 0.0, std),
                capsize=3,
                label=label,
                color=[colors[0] if v >= 0 else colors[1] for v in np.nan_to_num(mean)],
            )
            ax.bar_label(
                bars, labels=["n/a" if np.isnan(v) else f"{v:+.1f}" for v in mean], fontsize="x-small", padding=2
            )
        ax.axhline(0, color="k", lw=0.8)
        ax.set_ylabel(f"{host}\ngain (points)", fontsize="small")
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize="small")
    axes[-1].set_xticks(x, columns, rotation=20, ha="right")
    if title:
        axes[0].set_title(title, fontsize="medium")
    return fig


def ablation_figure(
    steps: Sequence[str],
    paper: Sequence[float],
    measured: Sequence[float | None],
    spread: Sequence[float | None] | None = None,
    title: str = "",
):
    """Ref-DAVIS17 J&F per ablation step: the paper's line and the reproduced one (± std), on separate axes
    because SPARROW-Mini's absolute level is not the paper's."""
    if not (len(steps) == len(paper) == len(measured)):
        raise ValueError(f"{len(steps)} steps, {len(paper)} paper values, {len(measured)} measured values")
    x = np.arange(len(steps), dtype=float)
    fig = new_figure(max(5.0, 1.3 * len(steps) + 1.5), 3.4)
    left = fig.add_subplot()
    left.plot(x, paper, "o-", color="0.5", label="paper")
    left.set_ylabel("paper J&F (%)")
    right = left.twinx()
    m = np.array([np.nan if v is None else v for v in measured], dtype=float)
    err = np.array([0.0 if s is None else s for s in (spread or [None] * len(steps))], dtype=float)
    right.errorbar(x, m, yerr=err, fmt="s-", color="C0", capsize=3, label="reproduced")
    right.set_ylabel("reproduced J&F (%)", color="C0")
    for xi, v in zip(x, m):
        if np.isnan(v):
            right.annotate("n/a", (xi, np.nanmin(m) if np.isfinite(m).any() else 0), fontsize="x-small", color="C0")
    left.set_xticks(x, list(steps), rotation=15, ha="right")
    lines = left.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    left.legend(lines, ["paper", "reproduced"], fontsize="small", loc="upper left")
    left.grid(alpha=0.3)
    if title:
        left.set_title(title, fontsize="medium")
    return fig
