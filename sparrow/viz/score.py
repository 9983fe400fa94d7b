"""The figure of a ``sparrow score`` result: per-video J&F bars and one video's per-frame J/F strip.

Takes the :class:`sparrow.eval.score.ScoreResult` (or its JSON, :func:`sparrow.eval.score.read_score_json`) that
printed the table, so the figure and the numbers come from the same object.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sparrow.viz._figures import new_figure


def score_figure(result: Any, video: str | None = None, width: float = 8.0):
    """Per-video J&F bars (missing predictions hatched) above the per-frame J and F of ``video`` (default: the
    video with the lowest J&F), from a score result's per-video rows."""
    rows = list(result.videos)
    if not rows or "jf" not in rows[0]:
        raise ValueError(f"{result.benchmark}: the score result has no per-video J&F rows")
    names = [r["video"] for r in rows]
    if video is None:
        video = names[int(np.argmin([r["jf"] for r in rows]))]
    elif video not in names:
        raise ValueError(f"{result.benchmark}: no video {video!r} in the result")
    fig = new_figure(max(width, 0.35 * len(rows) + 2), 5.2)
    top, bottom = fig.subplots(2, 1, height_ratios=[1.2, 1])
    x = np.arange(len(rows))
    values = [100 * r["jf"] for r in rows]
    bars = top.bar(x, values, color="#4C72B0")
    for bar, r in zip(bars, rows):
        if r.get("missing"):
            bar.set_hatch("//")
            bar.set_facecolor("#DD8452")
    top.set_xticks(x, names, rotation=60, ha="right", fontsize="small")
    top.set_ylabel("J&F (%)")
    top.set_ylim(0, 100)
    label = next(iter(result.tables), "")
    top.set_title(f"{result.benchmark}: per-video J&F ({label})", fontsize="medium")
    row = rows[names.index(video)]
    frames = np.arange(len(row["j_frames"]))
    bottom.plot(frames, 100 * np.asarray(row["j_frames"]), marker=".", label="J")
    bottom.plot(frames, 100 * np.asarray(row["f_frames"]), marker=".", label="F")
    bottom.set_xlabel("frame")
    bottom.set_ylabel("%")
    bottom.set_ylim(-2, 102)
    bottom.set_title(f"{video}: per-frame J and F", fontsize="medium")
    bottom.legend(loc="lower right", fontsize="small")
    return fig
