"""Figures of notebook 01: what the curated dataset holds, a look at its videos, and why the hard cases are hard.

- :func:`statistics_figure`: four panels of a :class:`~sparrow.data.statistics.CurationStatistics` (videos and
  Q&A pairs per source, frames per video, objects per expression, mask areas), one colour per source throughout;
- :func:`curated_montage`: one row per expression of a curated dataset, the rest of the frame dimmed and every
  referent outlined in its own colour (its mask, or its box where the source has boxes only, as VidSTG);
- :func:`hard_cases_figure`: one row per hard case of SPARROW-Mini, key frames with the referent and the other
  objects outlined, the referent's path so far, absent frames marked, and the reason the case is hard.

Outlines are drawn, not fills, so that an object keeps the colour its expression names ("the orange square");
a black halo keeps them visible on objects of any colour. Frames are resized to the panel width before drawing,
so that outlines have the same thickness whatever the video's resolution; the panels of a figure are laid out
on one canvas (:func:`grid_figure`), which renders far faster than one matplotlib axes per panel.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import cv2
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from sparrow.data.rle import decode_rle
from sparrow.viz._figures import new_figure
from sparrow.viz.montage import sample_indices
from sparrow.viz.overlay import GT_COLOR, Color, draw_box, draw_contours, object_color

if TYPE_CHECKING:
    from sparrow.data.curated import CuratedDataset
    from sparrow.data.records import ExpressionRecord
    from sparrow.data.statistics import CurationStatistics

OTHER_COLOR: Color = (255, 140, 0)
ABSENT_COLOR = "#c0392b"
# More distinct integer values than this and a distribution is binned instead of drawn one bar per value.
MAX_INTEGER_BARS = 30
MIN_INTEGER_SLOTS = 7


def source_colors(sources: Sequence[str]) -> dict[str, str]:
    """A fixed matplotlib colour per source (sorted names, tab10), shared by every panel."""
    return {name: f"C{i % 10}" for i, name in enumerate(sorted(sources))}


# -- statistics ---------------------------------------------------------------------------------------------------


def _integer_edges(arrays: list[np.ndarray]) -> np.ndarray | None:
    values = np.concatenate(arrays)
    if not len(values) or not np.all(np.equal(np.mod(values, 1), 0)):
        return None
    lo, hi = int(values.min()), int(values.max())
    if hi - lo + 1 > MAX_INTEGER_BARS:
        return None
    # Pad a narrow range (every video of SPARROW-Mini has the same length) so that one bar is not the whole axis.
    pad = max(0, (MIN_INTEGER_SLOTS - (hi - lo + 1) + 1) // 2)
    lo, hi = max(0, lo - pad), hi + pad
    return np.arange(lo - 0.5, hi + 1.0, 1.0)


def stacked_distribution(
    ax: Axes,
    values: Mapping[str, Sequence[float]],
    colors: Mapping[str, str],
    xlabel: str,
    bins: int = 20,
    log_x: bool = False,
    scale: float = 1.0,
    empty_note: str = "none in",
) -> None:
    """Stacked histogram of ``{source: values}`` on ``ax``: one bar per integer value when the values are few
    integers (frames per video, objects per expression), else ``bins`` bins (log-spaced with ``log_x``).

    Sources without values are left out of the bars and named in the panel after ``empty_note``; ``scale``
    multiplies the values first (e.g. 100 for percentages).
    """
    arrays = {k: np.asarray(v, dtype=float) * scale for k, v in values.items() if len(v)}
    empty = [k for k, v in values.items() if not len(v)]
    if not arrays:
        ax.text(0.5, 0.5, "no values", transform=ax.transAxes, ha="center", va="center")
        ax.set_xlabel(xlabel)
        return
    integer = None if log_x else _integer_edges(list(arrays.values()))
    every = np.concatenate(list(arrays.values()))
    if integer is not None:
        edges = integer
    elif log_x and (every > 0).any():
        positive = every[every > 0]
        edges = np.geomspace(positive.min(), positive.max() * 1.0001, bins + 1)
    else:
        edges = np.histogram_bin_edges(every, bins=bins)
    names = list(arrays)
    _, _, patches = ax.hist(
        [arrays[k] for k in names],
        bins=edges,
        stacked=True,
        color=[colors[k] for k in names],
        label=names,
        edgecolor="white",
        linewidth=0.5,
        rwidth=0.85 if integer is not None else None,
    )
    if integer is not None:
        ticks = np.arange(int(edges[0] + 0.5), int(edges[-1] + 0.5))
        step = max(1, len(ticks) // 12)
        ax.set_xticks(ticks[::step])
        totals = np.histogram(every, bins=edges)[0]
        top = patches[-1] if len(names) > 1 else patches
        ax.bar_label(top, labels=[f"{int(n):,}" if n else "" for n in totals], fontsize="x-small", padding=1)
        ax.margins(y=0.1)
    if log_x:
        from matplotlib.ticker import NullFormatter

        ax.set_xscale("log")
        # 1-2-5 ticks written plainly: matplotlib's default labels of a log axis spanning less than a decade
        # ("3×10⁰4×10⁰") run into each other.
        nice = [m * 10.0**e for e in range(-6, 7) for m in (1, 2, 5)]
        ticks = [v for v in nice if edges[0] <= v <= edges[-1]]
        ax.set_xticks(ticks, [f"{v:g}" for v in ticks])
        ax.xaxis.set_minor_formatter(NullFormatter())
    zeros = int((every <= 0).sum()) if log_x else 0
    notes = []
    if zeros:
        notes.append(f"{zeros} values ≤ 0 not shown")
    if empty:
        notes.append(f"{empty_note}: " + ", ".join(empty))
    if notes:
        ax.text(0.02, 0.96, "\n".join(notes), transform=ax.transAxes, ha="left", va="top", fontsize="x-small")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    ax.grid(axis="y", alpha=0.3)


def per_source_bars(
    ax: Axes, per_source: Mapping[str, Mapping[str, int]], keys: Mapping[str, str], colors: Mapping[str, str]
) -> None:
    """Grouped horizontal bars: for each source, one bar per ``keys`` entry (record key -> label), valued."""
    sources = sorted(per_source)
    height = 0.8 / len(keys)
    y = np.arange(len(sources), dtype=float)
    hatches = ("", "//", "..", "xx")
    for k, (key, label) in enumerate(keys.items()):
        values = [per_source[s].get(key, 0) for s in sources]
        bars = ax.barh(
            y - 0.4 + height * (k + 0.5),
            values,
            height,
            color=[colors[s] for s in sources],
            hatch=hatches[k % len(hatches)],
            edgecolor="white",
            label=label,
        )
        ax.bar_label(bars, labels=[f"{v:,}" for v in values], fontsize="x-small", padding=2)
    ax.set_yticks(y, sources)
    ax.invert_yaxis()
    ax.set_xlabel("count")
    ax.margins(x=0.15)
    ax.grid(axis="x", alpha=0.3)
    from matplotlib.patches import Patch

    ax.legend(
        handles=[
            Patch(facecolor="0.55", hatch=hatches[k % len(hatches)], edgecolor="white", label=label)
            for k, label in enumerate(keys.values())
        ],
        fontsize="small",
        loc="lower right",
    )


def statistics_figure(stats: CurationStatistics, title: str = "") -> Figure:
    """Four panels of a :class:`~sparrow.data.statistics.CurationStatistics`: videos and Q&A pairs per source,
    frames per video, objects per expression, and the mask area per annotated frame (log scale)."""
    colors = source_colors(list(stats.per_source))
    fig = new_figure(11.0, 7.4)
    (a, b), (c, d) = fig.subplots(2, 2)
    per_source_bars(a, stats.per_source, {"videos": "videos", "qa_pairs": "Q&A pairs"}, colors)
    a.set_title("videos and Q&A pairs per source", fontsize="medium")
    stacked_distribution(b, stats.frames_per_video, colors, "frames per video")
    b.set_title("frames per video", fontsize="medium")
    stacked_distribution(c, stats.objects_per_expression, colors, "objects referred to by one expression")
    title_c = "objects per expression"
    unknown = sum(getattr(stats, "referents_unknown", {}).values())
    if unknown:
        title_c += f" ({unknown} without released ground truth left out)"
    c.set_title(title_c, fontsize="medium")
    stacked_distribution(
        d,
        stats.mask_area_fraction,
        colors,
        "mask area (% of the frame)",
        bins=20,
        log_x=True,
        scale=100.0,
        empty_note="no masks (boxes only) in",
    )
    d.set_title("mask area per annotated frame", fontsize="medium")
    from matplotlib.patches import Patch

    fig.legend(
        handles=[Patch(color=colors[s], label=s) for s in sorted(colors)],
        loc="outside lower center",
        ncols=min(len(colors), 7),
        fontsize="small",
    )
    if title:
        fig.suptitle(title, fontsize="large")
    return fig


# -- drawing helpers ---------------------------------------------------------------------------------------------


def halo_contour(image: np.ndarray, mask: np.ndarray, color: Color, thickness: int = 2) -> np.ndarray:
    """Outline ``mask`` in ``color`` over a black halo, in place: visible on objects of any colour."""
    draw_contours(image, mask, (0, 0, 0), thickness + 2)
    return draw_contours(image, mask, color, thickness)


def halo_box(image: np.ndarray, box: Sequence[float], color: Color, thickness: int = 2) -> np.ndarray:
    """Draw ``[x0, y0, x1, y1]`` (exclusive max) in ``color`` over a black halo, in place."""
    draw_box(image, box, (0, 0, 0), thickness + 2)
    return draw_box(image, box, color, thickness)


def halo_path(
    image: np.ndarray, points: Sequence[tuple[float, float]], color: Color = (255, 255, 255), thickness: int = 1
) -> np.ndarray:
    """A polyline through ``points`` with a dot at the last one, over a black halo, in place."""
    if not points:
        return image
    pts = np.round(np.asarray(points)).astype(np.int32).reshape(-1, 1, 2)
    radius = thickness + 2
    for col, extra in (((0, 0, 0), 2), (color, 0)):
        if len(points) >= 2:
            cv2.polylines(image, [pts], False, col, thickness + extra, cv2.LINE_AA)
        cv2.circle(image, tuple(int(v) for v in pts[-1, 0]), radius + extra // 2, col, -1, cv2.LINE_AA)
    return image


def dim_outside(image: np.ndarray, keep: np.ndarray, factor: float = 0.45) -> np.ndarray:
    """Darken every pixel outside ``keep`` to ``factor`` of its brightness, in place."""
    outside = ~keep
    image[outside] = (image[outside].astype(np.float32) * factor).astype(np.uint8)
    return image


def key_frames(visible: Sequence[bool], num: int) -> list[int]:
    """``num`` frame positions that keep every change of visibility (the frames either side of it), the first
    and the last frame, filled up with evenly spaced ones."""
    visible = [bool(v) for v in visible]
    count = len(visible)
    if num >= count:
        return list(range(count))
    keep = {0, count - 1}
    for t in range(1, count):
        if visible[t] != visible[t - 1]:
            keep.update((t - 1, t))
    for t in sample_indices(count, num):
        if len(keep) >= num:
            break
        keep.add(t)
    extra = iter(t for t in range(count) if t not in keep)
    while len(keep) < num:
        keep.add(next(extra))
    return sorted(keep)


def fit_width(image: np.ndarray, width: int) -> np.ndarray:
    """``image`` resized to ``width`` pixels wide at its aspect ratio (area averaging when shrinking, nearest
    neighbour when enlarging, so that small synthetic frames stay crisp)."""
    h, w = image.shape[:2]
    height = max(1, int(round(h * width / w)))
    if (height, width) == (h, w):
        return image.copy()
    interpolation = cv2.INTER_AREA if width < w else cv2.INTER_NEAREST
    return cv2.resize(image, (width, height), interpolation=interpolation)


def fit_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A boolean mask resized (nearest neighbour) to ``shape`` = (height, width)."""
    if mask.shape == tuple(shape):
        return mask.astype(bool)
    return cv2.resize(mask.astype(np.uint8), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST).astype(bool)


# -- a grid of panels drawn as one image --------------------------------------------------------------------------


@dataclass
class GridRow:
    """One row of :func:`grid_figure`: a header (may span lines) and its panels with their titles."""

    header: str
    panels: list[np.ndarray]
    titles: list[str]
    title_colors: list[str] = field(default_factory=list)


def _wrap(text: str, width: int) -> str:
    return "\n".join(textwrap.wrap(text, width=width)) or text


def grid_figure(
    rows: Sequence[GridRow],
    dpi: int = 100,
    gap: int = 6,
    header_pt: float = 8.5,
    title_pt: float = 7.0,
    footer: float = 0.0,
) -> Figure:
    """Rows of equally wide panels laid out on one white canvas shown by a single axes, with the headers and
    panel titles as text: one image to draw instead of one axes per panel, so that a figure of 70 panels
    renders in a fraction of the time. ``footer`` reserves that many inches below the grid (for a legend).

    Pixels map 1:1 to the output at ``dpi``, so panels keep their exact size in the notebook.
    """
    if not rows or not all(r.panels for r in rows):
        raise ValueError("grid_figure needs rows with at least one panel each")
    panel_w = rows[0].panels[0].shape[1]
    if any(p.shape[1] != panel_w for r in rows for p in r.panels):
        raise ValueError("every panel of a grid must have the same width (use fit_width)")
    cols = max(len(r.panels) for r in rows)
    header_line = header_pt / 72 * dpi * 1.3
    title_line = title_pt / 72 * dpi * 1.35
    width = cols * panel_w + (cols + 1) * gap
    layout, y = [], gap
    for row in rows:
        lines = row.header.count("\n") + 1
        panel_h = max(p.shape[0] for p in row.panels)
        top = y + lines * header_line + title_line
        layout.append((y, int(round(top)), panel_h))
        y = int(round(top)) + panel_h + 2 * gap
    footer_px = int(round(footer * dpi))
    canvas = np.full((y + footer_px, width, 3), 255, np.uint8)
    for row, (_, top, _) in zip(rows, layout):
        for c, panel in enumerate(row.panels):
            x = gap + c * (panel_w + gap)
            canvas[top : top + panel.shape[0], x : x + panel_w] = panel
    fig = new_figure(width / dpi, canvas.shape[0] / dpi, dpi=dpi)
    fig.set_layout_engine("none")
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(canvas, interpolation="nearest", extent=(0, width, canvas.shape[0], 0))
    ax.set_xlim(0, width)
    ax.set_ylim(canvas.shape[0], 0)
    ax.set_axis_off()
    for row, (y0, top, _) in zip(rows, layout):
        ax.text(gap, y0, row.header, ha="left", va="top", fontsize=header_pt, linespacing=1.2)
        colors = row.title_colors or ["black"] * len(row.titles)
        for c, (title, color) in enumerate(zip(row.titles, colors)):
            ax.text(
                gap + c * (panel_w + gap) + panel_w / 2,
                top - 2,
                title,
                ha="center",
                va="bottom",
                fontsize=title_pt,
                color=color,
            )
    return fig


# -- montage of curated videos ----------------------------------------------------------------------------------


def _expression_panels(
    dataset: CuratedDataset, exp: ExpressionRecord, idx: Sequence[int], panel_px: int
) -> list[np.ndarray]:
    frames = dataset.load_frames(exp.video_id, list(idx))
    video = dataset.video(exp.video_id)
    objects = dataset.objects(exp.video_id)
    missing = [o for o in exp.object_ids if o not in objects]
    if missing:
        raise KeyError(
            f"{dataset.root}: expression {exp.expression_id} refers to object(s) {', '.join(missing)} "
            f"that {exp.video_id} does not have"
        )
    panels = []
    for j, t in enumerate(idx):
        image = fit_width(frames[j], panel_px)
        scale = image.shape[1] / video.width
        keep = np.zeros(image.shape[:2], bool)
        outlines = []
        for k, object_id in enumerate(exp.object_ids):
            obj = objects[object_id]
            color = GT_COLOR if len(exp.object_ids) == 1 else object_color(k)
            if obj.masks[t] is not None:
                mask = fit_mask(decode_rle(obj.masks[t]), image.shape[:2])
                keep |= mask
                outlines.append((halo_contour, mask, color))
            elif obj.boxes[t] is not None:
                box = [v * scale for v in obj.boxes[t]]
                x0, y0, x1, y1 = (max(0, int(round(v))) for v in box)
                keep[y0:y1, x0:x1] = True
                outlines.append((halo_box, box, color))
        dim_outside(image, keep)
        for draw, shape, color in outlines:
            draw(image, shape, color)
        panels.append(image)
    return panels


def curated_montage(
    dataset: CuratedDataset, expressions: Sequence[ExpressionRecord], num: int = 6, panel_px: int = 150, wrap: int = 120
) -> Figure:
    """One row per expression of a :class:`~sparrow.data.curated.CuratedDataset`: ``num`` frames of its video
    with everything but the referents dimmed and each referent outlined in its own colour (its mask, or its
    box where the object has no mask in that frame, as VidSTG), headed by source, split, kind, referents and
    the (wrapped) text. Frames outside the expression's ``frame_span`` are greyed in their panel title."""
    if not expressions:
        raise ValueError("no expressions to show")
    rows = []
    for exp in expressions:
        video = dataset.video(exp.video_id)
        idx = sample_indices(video.num_frames, num)
        span = exp.frame_span
        outside = [span is not None and not span[0] <= t < span[1] for t in idx]
        refs = ", ".join(exp.object_ids)
        span_text = f" · frames [{span[0]}, {span[1]})" if span is not None else ""
        plural = "s" if len(exp.object_ids) > 1 else ""
        header = f"{video.source} · {video.split} · {exp.kind} · referent{plural} {refs}{span_text}\n" + _wrap(
            f"“{exp.text}”", wrap
        )
        rows.append(
            GridRow(
                header,
                _expression_panels(dataset, exp, idx, panel_px),
                [video.frame_names[t] + (" (outside span)" if o else "") for t, o in zip(idx, outside)],
                ["0.55" if o else "black" for o in outside],
            )
        )
    return grid_figure(rows)


# -- hard cases ---------------------------------------------------------------------------------------------------


def _centroid(mask: np.ndarray) -> tuple[float, float] | None:
    ys, xs = np.nonzero(mask)
    if not len(xs):
        return None
    return float(xs.mean()), float(ys.mean())


def _hard_case_panels(example: Mapping, indices: Sequence[int], panel_px: int) -> list[np.ndarray]:
    frames = np.asarray(example["frames"])
    shape = fit_width(frames[0], panel_px).shape[:2]
    target = [fit_mask(m, shape) for m in np.asarray(example["target"], dtype=bool)]
    others = np.asarray(example["others"], dtype=bool)
    centres = [_centroid(m) for m in target]
    panels = []
    for t in indices:
        image = fit_width(frames[t], panel_px)
        halo_contour(image, fit_mask(others[t], shape), OTHER_COLOR, 1)
        halo_contour(image, target[t], GT_COLOR, 2)
        # The path so far ends at the referent's current centre; where it is absent, at its last seen one.
        halo_path(image, [c for c in centres[: t + 1] if c is not None])
        panels.append(image)
    return panels


def hard_cases_figure(examples: Sequence[Mapping], num: int = 8, panel_px: int = 150, wrap: int = 160) -> Figure:
    """Why each hard case is hard: one row per example of :func:`sparrow.data.synthetic.hard_case_examples`.

    Each row shows ``num`` frames (:func:`key_frames`: every appearance and disappearance is kept) with the
    referent outlined in the ground-truth colour, every other object outlined in orange, the referent's path
    so far in white, and "absent" where the referent is not visible; it is headed by the case, the expression
    and the one-sentence reason.
    """
    if not examples:
        raise ValueError("no hard-case examples to show")
    from matplotlib.lines import Line2D

    rows = []
    for example in examples:
        frames = np.asarray(example["frames"])
        if frames.ndim != 4 or np.asarray(example["target"]).shape != frames.shape[:3]:
            raise ValueError(
                f"hard case {example.get('case')!r}: frames {frames.shape} and target "
                f"{np.asarray(example['target']).shape} do not match"
            )
        visible = np.asarray(example["target_visible"], dtype=bool)
        idx = key_frames(visible, num)
        case = str(example["case"]).replace("_", " ")
        rows.append(
            GridRow(
                f"{case}: “{example['expression']}”\n{_wrap(example['why'], wrap)}",
                _hard_case_panels(example, idx, panel_px),
                [f"t={t}" if visible[t] else f"t={t}: absent" for t in idx],
                ["black" if visible[t] else ABSENT_COLOR for t in idx],
            )
        )
    fig = grid_figure(rows, footer=0.35)
    fig.legend(
        handles=[
            Line2D([], [], color=np.asarray(GT_COLOR) / 255, lw=2.5, label="referent"),
            Line2D([], [], color=np.asarray(OTHER_COLOR) / 255, lw=1.5, label="other objects"),
            Line2D([], [], color="k", lw=1.5, marker="o", markerfacecolor="w", label="referent's path so far (white)"),
        ],
        loc="lower center",
        ncols=3,
        fontsize="small",
        frameon=False,
    )
    return fig
