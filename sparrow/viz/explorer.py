"""The interactive mask explorer (notebook 05): browse a curated dataset with ground truth, predictions and TSF.

Built from standard ipywidgets only (Dropdown, IntSlider, Play, Checkbox, FloatSlider, Button, Image, HTML), so it
works in JupyterLab and the classic notebook without any extra front-end extension. The frame is composed with
numpy/OpenCV and sent as PNG bytes to an ``Image`` widget.

Three layers keep the per-frame update cheap (target: under 100 ms at 480x854 on a CPU):

- :class:`ExplorerData` reads the dataset, the prediction folders and TSF track files, and caches what it
  decoded (frames per video, masks and J/F per expression);
- :class:`ExpressionView` holds one expression's arrays already scaled to display size (small videos are
  enlarged by an integer factor, nearest neighbour, so masks stay crisp);
- :func:`render` composes one frame from a view and the :class:`ViewOptions`; :class:`MaskExplorer` wires it
  to the widgets and encodes the PNG.
"""

from __future__ import annotations

import html
import math
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from sparrow.data.boxes import mask_to_box
from sparrow.data.curated import CuratedDataset
from sparrow.data.records import ExpressionRecord, submission_names
from sparrow.viz.compare import FrameScores, per_frame_jf
from sparrow.viz.export import encode_png
from sparrow.viz.overlay import (
    BOX_COLOR,
    GT_COLOR,
    TRACK_COLOR,
    BoxLayer,
    Color,
    MaskLayer,
    TrackLayer,
    compose,
    draw_label,
    pred_color,
)
from sparrow.viz.predictions import PredictedMasks, PredictionFolder
from sparrow.viz.tracks import Track, TrackFolder


@dataclass(frozen=True)
class ExplorerConfig:
    """Display settings. ``min_display_height``: videos lower than this are enlarged by an integer factor."""

    min_display_height: int = 256
    alpha: float = 0.45
    cached_videos: int = 3
    cached_expressions: int = 12
    play_interval_ms: int = 200
    png_compression: int = 1
    panel_gap: int = 4


# -- data ------------------------------------------------------------------------------------------------------

# Evaluation splits first: they are where predictions exist and what the tables score.
_SPLIT_ORDER = ("valid", "val", "valid_u", "test", "train")


class _LRU(OrderedDict):
    """A dict that forgets its least recently used entries beyond ``size`` (a 480x854 video of 100 frames is
    120 MB of RGB and 40 MB per mask stack, so browsing must not keep every one it has shown)."""

    def __init__(self, size: int):
        super().__init__()
        self.size = max(1, size)

    def get_or(self, key, make):
        if key in self:
            self.move_to_end(key)
            return self[key]
        value = make()
        self[key] = value
        while len(self) > self.size:
            self.popitem(last=False)
        return value


class ExplorerData:
    """The dataset plus optional prediction folders and TSF tracks, with caches for what has been decoded.

    ``predictions`` maps a model name (e.g. ``"baseline"``, ``"SPARROW"``) to a server-layout folder; ``tracks``
    is a folder of TSF track files (see :mod:`sparrow.viz.tracks`) or a callable ``(video_id, expression_id,
    num_frames) -> Track | None`` so that the TSF pipeline can hand over tracks it holds in memory.
    """

    def __init__(
        self,
        dataset: CuratedDataset,
        predictions: Mapping[str, str | Path] | None = None,
        tracks: str | Path | TrackFolder | Callable[[str, str, int], Track | None] | None = None,
        cached_videos: int = 3,
        cached_expressions: int = 12,
    ):
        self.dataset = dataset
        self.models = [
            PredictionFolder(Path(root), name) for name, root in (predictions or {}).items() if root is not None
        ]
        if tracks is None or callable(tracks):
            self._tracks = tracks
        else:
            self._tracks = tracks if isinstance(tracks, TrackFolder) else TrackFolder(Path(tracks))
        self._frames = _LRU(cached_videos)
        self._gt = _LRU(cached_expressions)
        self._preds = _LRU(cached_expressions * max(1, len(self.models)))
        self._scores = _LRU(cached_expressions * max(1, len(self.models)))

    @property
    def has_tracks(self) -> bool:
        return self._tracks is not None

    # listings
    @cached_property
    def _videos_by_split(self) -> dict[str, list[str]]:
        # One pass over videos.jsonl; switching split must not re-read it (30k videos at paper scale).
        by_split: dict[str, list[str]] = {}
        for v in self.dataset.iter_videos():
            if v.num_frames > 0 and self.dataset.expressions(v.video_id):
                by_split.setdefault(v.split, []).append(v.video_id)
        return by_split

    def splits(self) -> list[str]:
        """Splits that hold at least one video with an expression, evaluation splits first."""
        return sorted(
            self._videos_by_split, key=lambda s: (_SPLIT_ORDER.index(s) if s in _SPLIT_ORDER else len(_SPLIT_ORDER), s)
        )

    def first_annotated(self) -> tuple[str, str, str]:
        """(split, video_id, expression_id) of the first expression with a ground-truth referent, in split order;
        the first expression at all when none has one (e.g. only unannotated test splits)."""
        fallback = None
        for split in self.splits():
            for video_id in self.videos(split):
                for e in self.expressions(video_id):
                    if e.object_ids:
                        return split, video_id, e.expression_id
                    fallback = fallback or (split, video_id, e.expression_id)
        if fallback is None:
            raise ValueError(f"{self.dataset.root}: no video with an expression to explore")
        return fallback

    def videos(self, split: str) -> list[str]:
        """Videos of ``split`` that have frames and at least one expression, in file order."""
        return list(self._videos_by_split.get(split, []))

    def expressions(self, video_id: str) -> list[ExpressionRecord]:
        return self.dataset.expressions(video_id)

    def find_expression(self, expression_id: str) -> ExpressionRecord:
        for videos in self._videos_by_split.values():
            for video_id in videos:
                for e in self.expressions(video_id):
                    if e.expression_id == expression_id:
                        return e
        raise KeyError(f"{self.dataset.root}: no expression {expression_id!r}")

    def counts(self) -> dict[str, int]:
        """Browsable videos and expressions, in total and per split (deterministic numbers to record)."""
        out = {"videos": 0, "expressions": 0}
        for split in self.splits():
            videos = self.videos(split)
            n_exp = sum(len(self.expressions(v)) for v in videos)
            out[f"videos/{split}"] = len(videos)
            out[f"expressions/{split}"] = n_exp
            out["videos"] += len(videos)
            out["expressions"] += n_exp
        return out

    # pixels, cached
    def frames(self, video_id: str) -> np.ndarray:
        """(T, H, W, 3) RGB frames of one video."""
        return self._frames.get_or(video_id, lambda: self.dataset.load_frames(video_id))

    def ground_truth(self, expression: ExpressionRecord) -> np.ndarray:
        """(T, H, W) bool union of the referent's masks."""
        key = (expression.video_id, expression.expression_id)
        return self._gt.get_or(key, lambda: self.dataset.expression_masks(expression))

    def gt_boxes(self, expression: ExpressionRecord) -> dict[str, list]:
        """Per referent object: its per-frame boxes (exclusive max) or None."""
        objects = self.dataset.objects(expression.video_id)
        return {oid: objects[oid].boxes for oid in expression.object_ids if oid in objects}

    def prediction(self, model: PredictionFolder, expression: ExpressionRecord) -> PredictedMasks | None:
        """The model's masks for this expression, None when it has no prediction folder for it."""
        key = (model.name, expression.video_id, expression.expression_id)
        return self._preds.get_or(
            key, lambda: model.load(self.dataset.video(expression.video_id), expression.expression_id)
        )

    def scores(self, model: PredictionFolder, expression: ExpressionRecord) -> FrameScores | None:
        """Per-frame J and F of the model's prediction (absent frames count as empty masks)."""
        key = (model.name, expression.video_id, expression.expression_id)

        def compute() -> FrameScores | None:
            pred = self.prediction(model, expression)
            return None if pred is None else per_frame_jf(self.ground_truth(expression), pred.masks)

        return self._scores.get_or(key, compute)

    def track(self, expression: ExpressionRecord) -> Track | None:
        if self._tracks is None:
            return None
        video = self.dataset.video(expression.video_id)
        num_frames = video.num_frames
        if isinstance(self._tracks, TrackFolder):
            return self._tracks.load(
                expression.video_id, expression.expression_id, num_frames, video.width, video.height
            )
        found = self._tracks(expression.video_id, expression.expression_id, num_frames)
        return None if found is None else found.fitted(num_frames)


# -- one expression at display scale ----------------------------------------------------------------------------


def _scale_box(box: Sequence[float] | None, scale: int) -> list[float] | None:
    return None if box is None else [v * scale for v in box]


@dataclass
class ModelView:
    name: str
    color: Color
    folder: Path  # where this expression's PNGs are (or would be)
    masks: np.ndarray | None  # (T, h, w) bool at display scale, None when absent
    boxes: list | None = None  # tight box of each frame's mask (display scale)
    scores: FrameScores | None = None
    missing_frames: int = 0


@dataclass
class ExpressionView:
    """Everything :func:`render` needs for one expression, at display scale."""

    video_id: str
    expression: ExpressionRecord
    scale: int
    frames: np.ndarray  # (T, h, w, 3) uint8
    gt: np.ndarray  # (T, h, w) bool
    gt_boxes: dict[str, list]
    models: list[ModelView] = field(default_factory=list)
    track: Track | None = None
    frame_names: list[str] = field(default_factory=list)

    @property
    def num_frames(self) -> int:
        return len(self.frames)


def _enlarge(stack: np.ndarray, scale: int) -> np.ndarray:
    if scale == 1:
        return stack
    return np.repeat(np.repeat(stack, scale, axis=1), scale, axis=2)


def build_view(data: ExplorerData, expression: ExpressionRecord, min_display_height: int = 256) -> ExpressionView:
    """Load (through the caches) and enlarge everything one expression shows."""
    video = data.dataset.video(expression.video_id)
    scale = max(1, math.ceil(min_display_height / max(1, video.height)))
    frames = _enlarge(data.frames(expression.video_id), scale)
    gt = _enlarge(data.ground_truth(expression), scale)
    gt_boxes = {oid: [_scale_box(b, scale) for b in boxes] for oid, boxes in data.gt_boxes(expression).items()}
    models = []
    for i, model in enumerate(data.models):
        pred = data.prediction(model, expression)
        folder = model.expression_dir(expression.video_id, expression.expression_id)
        if pred is None:
            models.append(ModelView(model.name, pred_color(i), folder, None))
            continue
        masks = _enlarge(pred.masks, scale)
        boxes = [_scale_box(mask_to_box(m), scale) for m in pred.masks]
        models.append(
            ModelView(model.name, pred_color(i), folder, masks, boxes, data.scores(model, expression), pred.num_missing)
        )
    track = data.track(expression)
    if track is not None and scale != 1:
        track = Track(tuple(_scale_box(b, scale) for b in track.boxes), track.crop_frames, track.source)
    return ExpressionView(
        expression.video_id, expression, scale, frames, gt, gt_boxes, models, track, list(video.frame_names)
    )


# -- composing a frame --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ViewOptions:
    """The state of the explorer's toggles. ``show_models`` holds one flag per prediction model."""

    show_gt: bool = True
    show_models: tuple[bool, ...] = ()
    show_boxes: bool = False
    show_tsf: bool = False
    alpha: float = 0.45
    side_by_side: bool = False


def _panel(
    view: ExpressionView, t: int, options: ViewOptions, models: Sequence[ModelView], show_gt: bool, title: str
) -> np.ndarray:
    masks = []
    if show_gt:
        masks.append(MaskLayer(view.gt[t], GT_COLOR, "ground truth"))
    for m in models:
        masks.append(MaskLayer(m.masks[t], m.color, m.name))
    boxes = []
    if options.show_boxes:
        if show_gt:
            boxes += [BoxLayer(b[t], BOX_COLOR, oid) for oid, b in view.gt_boxes.items() if t < len(b) and b[t]]
        boxes += [BoxLayer(m.boxes[t], m.color) for m in models if m.boxes and m.boxes[t] is not None]
    track = None
    if options.show_tsf and view.track is not None:
        track = TrackLayer(view.track.boxes, t, TRACK_COLOR, crop_frames=view.track.crop_frames)
    image = compose(view.frames[t], masks, boxes, track, options.alpha)
    if title:
        draw_label(image, title, (1, 1), (255, 255, 255))
    return image


def render(view: ExpressionView, t: int, options: ViewOptions, gap: int = 4) -> np.ndarray:
    """The RGB image of frame ``t``: one panel, or one panel per shown model side by side.

    Side by side, each shown model gets its own panel (with the ground truth when it is on); with fewer than
    two such models a ground-truth panel comes first, so there are always two things to compare.
    """
    if not 0 <= t < view.num_frames:
        raise IndexError(f"frame {t} outside 0..{view.num_frames - 1} of {view.video_id}")
    flags = tuple(options.show_models) + (False,) * (len(view.models) - len(options.show_models))
    shown = [m for m, on in zip(view.models, flags) if on and m.masks is not None]
    if not options.side_by_side:
        return _panel(view, t, options, shown, options.show_gt, "")
    panels = [_panel(view, t, options, [m], options.show_gt, m.name) for m in shown]
    if len(panels) < 2:
        panels.insert(0, _panel(view, t, options, [], True, "ground truth"))
    h = panels[0].shape[0]
    spacer = np.full((h, gap, 3), 255, np.uint8)
    parts = []
    for i, p in enumerate(panels):
        if i:
            parts.append(spacer)
        parts.append(p)
    return np.concatenate(parts, axis=1)


# -- widgets --------------------------------------------------------------------------------------------------------


def _hex(color: Sequence[float]) -> str:
    return "#" + "".join(f"{int(round(c)):02x}" for c in color[:3])


def _score_color(value: float) -> str:
    from matplotlib import colormaps

    return _hex(np.asarray(colormaps["RdYlGn"](float(np.clip(value, 0, 1)))[:3]) * 255)


def _swatch(color: Color, label: str) -> str:
    return (
        f'<span style="display:inline-block;width:12px;height:12px;background:{_hex(color)};'
        f'margin:0 4px 0 10px;vertical-align:middle"></span>{html.escape(label)}'
    )


class MaskExplorer:
    """The explorer widget. Display it as the last expression of a cell (or ``display(explorer.widget)``).

    Controls: split, video and expression pickers; a frame slider with a play button; toggles for the ground
    truth, each prediction model, boxes and TSF crops/tracks; opacity; side by side; and a per-frame J/F strip
    (one row of buttons per model and metric, coloured red to green) where a click jumps to that frame.
    """

    def __init__(
        self,
        dataset: CuratedDataset | str | Path,
        predictions: Mapping[str, str | Path | None] | None = None,
        tracks: str | Path | TrackFolder | Callable[[str, str, int], Track | None] | None = None,
        config: ExplorerConfig | None = None,
        video_id: str | None = None,
        expression_id: str | None = None,
    ):
        import ipywidgets as w

        if not isinstance(dataset, CuratedDataset):
            dataset = CuratedDataset(dataset)
        self.config = config or ExplorerConfig()
        self.data = ExplorerData(
            dataset, predictions, tracks, self.config.cached_videos, self.config.cached_expressions
        )
        self.view: ExpressionView | None = None
        self._busy = False

        splits = self.data.splits()
        if video_id is None and expression_id is not None:
            video_id = self.data.find_expression(str(expression_id)).video_id
        if video_id is not None:
            start_split = dataset.video(video_id).split
        else:
            start_split, video_id, expression_id = self.data.first_annotated()
        self.split = w.Dropdown(options=splits, value=start_split, description="split")
        self.video = w.Dropdown(description="video", layout=w.Layout(width="340px"))
        self.expression = w.Dropdown(description="expression", layout=w.Layout(width="560px"))
        self.frame = w.IntSlider(
            value=0, min=0, max=0, description="frame", continuous_update=True, layout=w.Layout(width="560px")
        )
        self.play = w.Play(value=0, min=0, max=0, interval=self.config.play_interval_ms, description="play")
        w.jslink((self.play, "value"), (self.frame, "value"))
        self.show_gt = w.Checkbox(value=True, description="ground truth", indent=False, layout=w.Layout(width="auto"))
        self.show_models = [
            w.Checkbox(value=True, description=m.name, indent=False, layout=w.Layout(width="auto"))
            for m in self.data.models
        ]
        self.show_boxes = w.Checkbox(value=False, description="boxes", indent=False, layout=w.Layout(width="auto"))
        self.show_tsf = w.Checkbox(
            value=False,
            description="TSF crops/track",
            indent=False,
            layout=w.Layout(width="auto"),
            disabled=not self.data.has_tracks,
        )
        self.side_by_side = w.Checkbox(
            value=len(self.data.models) >= 2, description="side by side", indent=False, layout=w.Layout(width="auto")
        )
        self.opacity = w.FloatSlider(
            value=self.config.alpha, min=0.0, max=1.0, step=0.05, description="opacity", continuous_update=True
        )
        self.image = w.Image(format="png", layout=w.Layout(max_width="100%", height="auto"))
        self.text = w.HTML()
        self.notes = w.HTML()
        self.frame_info = w.HTML()
        self.strip = w.VBox()
        self.legend = w.HTML(self._legend_html())
        self._strip_buttons: list[list] = []

        self.split.observe(self._on_split, names="value")
        self.video.observe(self._on_video, names="value")
        self.expression.observe(self._on_expression, names="value")
        self.frame.observe(self._on_frame, names="value")
        for control in (
            self.show_gt,
            self.show_boxes,
            self.show_tsf,
            self.side_by_side,
            self.opacity,
            *self.show_models,
        ):
            control.observe(self._on_option, names="value")

        toggles = w.HBox(
            [self.show_gt, *self.show_models, self.show_boxes, self.show_tsf, self.side_by_side, self.opacity],
            layout=w.Layout(flex_flow="row wrap", align_items="center"),
        )
        self.widget = w.VBox(
            [
                w.HBox([self.split, self.video]),
                self.expression,
                self.text,
                w.HBox([self.play, self.frame]),
                toggles,
                self.legend,
                self.image,
                self.frame_info,
                self.strip,
                self.notes,
            ]
        )
        self._set_videos(video_id, expression_id)

    # display
    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

    def _legend_html(self) -> str:
        parts = [_swatch(GT_COLOR, "ground truth"), _swatch(BOX_COLOR, "GT boxes")]
        parts += [_swatch(pred_color(i), m.name) for i, m in enumerate(self.data.models)]
        if self.data.has_tracks:
            parts.append(_swatch(TRACK_COLOR, "TSF track / crop (TSF* marks a frame whose crop K-means picked)"))
        return '<div style="font-size:12px">' + "".join(parts) + "</div>"

    # state
    def options(self) -> ViewOptions:
        return ViewOptions(
            show_gt=self.show_gt.value,
            show_models=tuple(c.value for c in self.show_models),
            show_boxes=self.show_boxes.value,
            show_tsf=self.show_tsf.value,
            alpha=float(self.opacity.value),
            side_by_side=self.side_by_side.value,
        )

    def current_image(self) -> np.ndarray:
        """The RGB array currently shown (decoded from the Image widget's PNG bytes)."""
        buf = np.frombuffer(self.image.value, np.uint8)
        return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)

    def render_current(self) -> np.ndarray:
        return render(self.view, self.frame.value, self.options(), self.config.panel_gap)

    def update_image(self) -> None:
        """Compose and send the current frame (the per-frame update the benchmark times)."""
        if self.view is None:
            return
        image = self.render_current()
        width = f"{image.shape[1]}px"
        if self.image.layout.width != width:
            # Shown at its own pixel size: a browser rescale would blur the one-pixel outlines.
            self.image.layout.width = width
        self.image.value = encode_png(image, self.config.png_compression, fast=True)
        self._update_frame_info()

    # cascading pickers
    def _set_videos(self, video_id: str | None = None, expression_id: str | None = None) -> None:
        videos = self.data.videos(self.split.value)
        self._busy = True
        try:
            self.video.options = videos
            self.video.value = video_id if video_id in videos else (videos[0] if videos else None)
        finally:
            self._busy = False
        self._set_expressions(expression_id)

    def _set_expressions(self, expression_id: str | None = None) -> None:
        expressions = self.data.expressions(self.video.value) if self.video.value else []
        ids = [e.expression_id for e in expressions]
        if expression_id is not None and str(expression_id) not in ids:
            raise KeyError(f"{self.data.dataset.root}: video {self.video.value!r} has no expression {expression_id!r}")
        self._busy = True
        try:
            self.expression.options = [(self._expression_label(e), e.expression_id) for e in expressions]
            self.expression.value = str(expression_id) if expression_id is not None else (ids[0] if ids else None)
        finally:
            self._busy = False
        self._load_expression()

    @staticmethod
    def _expression_label(e: ExpressionRecord) -> str:
        text = e.text if len(e.text) <= 70 else e.text[:69] + "…"
        return f"{submission_names(e.video_id, e.expression_id)[1]}: {text}"

    def _on_split(self, change) -> None:
        if not self._busy:
            self._set_videos()

    def _on_video(self, change) -> None:
        if not self._busy:
            self._set_expressions()

    def _on_expression(self, change) -> None:
        if not self._busy:
            self._load_expression()

    def _on_frame(self, change) -> None:
        if not self._busy:
            self.update_image()
            self._highlight_strip(change["old"], change["new"])

    def _on_option(self, change) -> None:
        if not self._busy:
            self.update_image()

    def _load_expression(self) -> None:
        expression = (
            next((e for e in self.data.expressions(self.video.value) if e.expression_id == self.expression.value), None)
            if self.video.value
            else None
        )
        if expression is None:
            self.view = None
            return
        self.view = build_view(self.data, expression, self.config.min_display_height)
        last = self.view.num_frames - 1
        self._busy = True
        try:
            self.frame.max = max(0, last)
            self.play.max = max(0, last)
            self.frame.value = min(self.frame.value, last)
        finally:
            self._busy = False
        span = f" (frames {expression.frame_span[0]}–{expression.frame_span[1] - 1})" if expression.frame_span else ""
        self.text.value = (
            f"<b>“{html.escape(expression.text)}”</b> — {html.escape(expression.kind)}, "
            f"objects {', '.join(map(html.escape, expression.object_ids))}{span}"
        )
        self.notes.value = self._notes_html()
        self._build_strip()
        self.update_image()

    def _notes_html(self) -> str:
        view = self.view
        notes = []
        if not view.expression.object_ids:
            notes.append("This expression has no ground-truth referent (an unannotated split): nothing to score.")
        if not view.models:
            notes.append("No prediction folders given: showing ground truth only.")
        for m in view.models:
            where = html.escape(str(m.folder))
            if m.masks is None:
                notes.append(
                    f"<b>{html.escape(m.name)}</b>: no prediction for this expression (expected "
                    f"<code>{where}/&lt;frame&gt;.png</code>)."
                )
            elif m.missing_frames:
                notes.append(
                    f"<b>{html.escape(m.name)}</b>: {m.missing_frames} of {view.num_frames} frames have no "
                    f"PNG in <code>{where}</code>; they count as empty masks."
                )
        if self.data.has_tracks and view.track is None:
            notes.append("No TSF track file for this expression.")
        elif not self.data.has_tracks:
            notes.append("No TSF track folder given.")
        return "<br>".join(f'<span style="color:#a33">{n}</span>' for n in notes)

    # J/F strip
    def _build_strip(self) -> None:
        import ipywidgets as w

        view = self.view
        rows, self._strip_buttons = [], []
        width = max(3, min(14, 700 // max(1, view.num_frames)))
        for m in view.models:
            if m.scores is None:
                continue
            for metric, values in (("J", m.scores.j), ("F", m.scores.f)):
                buttons = []
                for t, v in enumerate(values):
                    b = w.Button(
                        tooltip=f"frame {t}: {metric} = {v:.3f}",
                        layout=w.Layout(width=f"{width}px", height="14px", padding="0", margin="0"),
                    )
                    b.style.button_color = _score_color(v)
                    b.on_click(self._jump_to(t))
                    buttons.append(b)
                self._strip_buttons.append(buttons)
                mean = float(np.mean(values))
                label = w.HTML(
                    f'<span style="font-size:11px">{_swatch(m.color, m.name)} {metric} (mean {mean:.3f})</span>',
                    layout=w.Layout(width="200px"),
                )
                rows.append(
                    w.HBox(
                        [label, w.HBox(buttons, layout=w.Layout(overflow="hidden"))],
                        layout=w.Layout(align_items="center"),
                    )
                )
        if not rows:
            rows = [w.HTML('<span style="font-size:11px;color:#666">Per-frame J/F strip: needs a prediction.</span>')]
        self.strip.children = rows
        self._highlight_strip(None, self.frame.value)

    def _jump_to(self, t: int):
        def handler(_button) -> None:
            self.frame.value = t

        return handler

    def _highlight_strip(self, old: int | None, new: int) -> None:
        for buttons in self._strip_buttons:
            if old is not None and 0 <= old < len(buttons):
                buttons[old].layout.border = ""
            if 0 <= new < len(buttons):
                buttons[new].layout.border = "2px solid black"

    def _update_frame_info(self) -> None:
        view, t = self.view, self.frame.value
        parts = [f"frame {t} / {view.num_frames - 1} (<code>{html.escape(view.frame_names[t])}</code>)"]
        for m in view.models:
            if m.scores is not None:
                parts.append(f"{_swatch(m.color, m.name)} J {m.scores.j[t]:.3f} F {m.scores.f[t]:.3f}")
        self.frame_info.value = '<span style="font-size:12px">' + " ".join(parts) + "</span>"

    # numbers and static pictures for the notebook
    def shown_scores(self) -> dict[str, FrameScores]:
        """J/F of the expression on screen, per model that has a prediction for it."""
        return {} if self.view is None else {m.name: m.scores for m in self.view.models if m.scores is not None}

    def composed_frames(self) -> list[np.ndarray]:
        """Every frame of the shown expression rendered with the current toggles (to save as MP4 or GIF)."""
        options = self.options()
        return [render(self.view, t, options, self.config.panel_gap) for t in range(self.view.num_frames)]

    def snapshot_figure(self, num: int = 6):
        """A static Figure of the shown expression: ground truth beside each available prediction with per-frame
        J and F (:func:`~sparrow.viz.compare.compare_figure`), or a montage with the TSF track when no model has
        a prediction for it."""
        from sparrow.viz.compare import compare_figure
        from sparrow.viz.montage import montage

        expression = self.view.expression
        frames = self.data.frames(expression.video_id)
        gt = self.data.ground_truth(expression)
        preds, colors = {}, {}
        for i, model in enumerate(self.data.models):
            pred = self.data.prediction(model, expression)
            if pred is not None:
                preds[model.name], colors[model.name] = pred.masks, pred_color(i)
        title = expression.expression_id
        if preds:
            return compare_figure(frames, gt, preds, num=num, text=expression.text, title=title, colors=colors)
        track = self.data.track(expression)
        return montage(
            frames,
            gt,
            track=None if track is None else list(track.boxes),
            num=num,
            text=expression.text,
            title=title,
            frame_names=self.view.frame_names,
        )


def recorded_numbers(explorer: MaskExplorer) -> list[dict[str, Any]]:
    """Every number notebook 05 records, as keyword arguments of :meth:`sparrow.results.Recorder.add`: what can be
    browsed, and the J and F of each model on the example shown first."""
    out: list[dict[str, Any]] = [
        {"name": f"browsable/{name}", "value": value, "unit": "count"} for name, value in explorer.data.counts().items()
    ]
    out.append({"name": "shown_example/expression", "value": explorer.view.expression.expression_id})
    for name, scores in explorer.shown_scores().items():
        out += [
            {"name": f"shown_example/{name}/J", "value": scores.mean_j, "unit": "J"},
            {"name": f"shown_example/{name}/F", "value": scores.mean_f, "unit": "F"},
        ]
    return out
