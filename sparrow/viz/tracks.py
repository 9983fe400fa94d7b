"""TSF tracks on disk (per-frame target boxes and the frames whose crops K-means picked), read for display, and
the figures of each TSF stage for one entry (notebook 02).

Stage figures (:func:`keyframe_figure`, :func:`track_figure`, :func:`crop_strip_figure`,
:func:`crop_clusters_figure`, or all four from :func:`tsf_stage_figures`) take a
:class:`sparrow.tsf.cache.TSFEntry` and the video's frames: the keyframe with the detected and the ground-truth
box, the track over sampled frames on the referent's ground-truth mask, the crops as the encoder saw them with K-means'
picks framed, and a 2-D PCA projection of the crop features coloured by K-means cluster with the picks ringed.

Accepted files:

- ``.txt``: the CLDTracker / pytracking output, one box line per frame, read by the TSF pipeline's own reader
  (:func:`sparrow.tsf.tracking.read_boxes_txt` and ``boxes_for_frames``: the released ``--tsf_boxes_txt`` rules,
  xyxy vs xywh by vote, frame i uses line ``min(i, L - 1)``); a degenerate box is shown as a lost target.
- ``.json``: either a list with one ``[x0, y0, x1, y1]`` box (exclusive max) or null per frame, or an object
  ``{"boxes": [...], "format": "xyxy" | "xywh", "crop_frames": [...]}``.

A :class:`TrackFolder` finds the file of an expression as ``<root>/<video>/<expression>.{json,txt}`` (the names
of the prediction folders' server layout, :func:`sparrow.data.records.submission_names`), else the per-video file
``<root>/<video_id>.{json,txt}`` or ``<root>/<video>.txt`` that SPARROW's ``--tsf_boxes_txt`` reads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sparrow.data.records import submission_names
from sparrow.storage import DataError, read_json

Box = list[float]


@dataclass(frozen=True)
class Track:
    """Per-frame boxes ``[x0, y0, x1, y1]`` (exclusive max) or None, and the medoid crop frames."""

    boxes: tuple[Box | None, ...]
    crop_frames: tuple[int, ...] = ()
    source: str = ""

    def fitted(self, num_frames: int) -> Track:
        """The track cut or padded (with None: no box) to ``num_frames``."""
        boxes = tuple(self.boxes[:num_frames]) + (None,) * max(0, num_frames - len(self.boxes))
        return Track(boxes, tuple(f for f in self.crop_frames if 0 <= f < num_frames), self.source)


def _xywh_to_xyxy(values: list[float]) -> Box | None:
    x, y, w, h = values
    if w <= 0 or h <= 0:
        return None
    return [x, y, x + w, y + h]


def _parse_box(item: Any, fmt: str, where: str) -> Box | None:
    if item is None:
        return None
    if not isinstance(item, (list, tuple)) or len(item) != 4:
        raise DataError(f"{where}: a box is 4 numbers or null, got {str(item)[:60]}")
    try:
        values = [float(v) for v in item]
    except (TypeError, ValueError):
        raise DataError(f"{where}: box {item} is not numeric") from None
    if not all(math.isfinite(v) for v in values):
        raise DataError(f"{where}: box {item} is not finite")
    if fmt == "xywh":
        return _xywh_to_xyxy(values)
    if values[2] <= values[0] or values[3] <= values[1]:
        return None
    return values


def read_track(path: str | Path, num_frames: int, width: int, height: int) -> Track:
    """Read a TSF track file (``.txt`` or ``.json``) for a video of ``num_frames`` frames of ``width`` x ``height``.

    Malformed content raises :class:`DataError` naming the file.
    """
    path = Path(path)
    if path.suffix == ".txt":
        from sparrow.tsf.tracking import boxes_for_frames, read_boxes_txt

        rows = read_boxes_txt(path)
        boxes = [
            None if b is None or b[2] <= b[0] or b[3] <= b[1] else [float(v) for v in b]
            for b in boxes_for_frames(rows, num_frames, width, height)
        ]
        return Track(tuple(boxes), (), str(path))
    if path.suffix == ".json":
        data = read_json(path)
        fmt, crop_frames = "xyxy", []
        if isinstance(data, dict):
            fmt = data.get("format", "xyxy")
            crop_frames = data.get("crop_frames", [])
            data = data.get("boxes")
        if fmt not in ("xyxy", "xywh"):
            raise DataError(f"{path}: unknown box format {fmt!r} (xyxy or xywh)")
        if not isinstance(data, list):
            raise DataError(f"{path}: expected a list of boxes or an object with 'boxes'")
        boxes = [_parse_box(item, fmt, f"{path} frame {i}") for i, item in enumerate(data)]
        if not isinstance(crop_frames, list) or not all(isinstance(f, int) for f in crop_frames):
            raise DataError(f"{path}: crop_frames must be frame indices (ints)")
        return Track(tuple(boxes), tuple(crop_frames), str(path)).fitted(num_frames)
    raise DataError(f"{path}: a track file is .txt (x,y,w,h lines) or .json")


@dataclass(frozen=True)
class TrackFolder:
    """TSF track files per expression (or per video) under ``root``."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    def find(self, video_id: str, expression_id: str) -> Path | None:
        video_name, expression = submission_names(video_id, expression_id)
        stems = [self.root / video_name / expression, self.root / video_id, self.root / video_name]
        for stem in stems:
            for suffix in (".json", ".txt"):
                candidate = stem.with_name(stem.name + suffix)
                if candidate.is_file():
                    return candidate
        return None

    def load(self, video_id: str, expression_id: str, num_frames: int, width: int, height: int) -> Track | None:
        path = self.find(video_id, expression_id)
        return None if path is None else read_track(path, num_frames, width, height)


# -- figures of the TSF stages -----------------------------------------------------------------------------------


def _entry_track(entry) -> list[Box | None]:
    from sparrow.tsf.runs import tracked_boxes

    return [None if math.isnan(float(b[0])) else [float(v) for v in b] for b in tracked_boxes(entry, fill_lost=False)]


def keyframe_figure(frame, entry, truth: Box | None = None, text: str = "", width: float = 3.2):
    """The keyframe with the detector's box (and its score) and the referent's ground-truth box."""
    from sparrow.viz.overlay import BOX_COLOR, GT_COLOR, BoxLayer, overlay_figure

    boxes = []
    if truth is not None:
        boxes.append(BoxLayer(truth, GT_COLOR, "ground truth"))
    if entry.key_box is not None:
        score = "" if entry.key_score is None else f" {entry.key_score:.2f}"
        boxes.append(BoxLayer(entry.key_box, BOX_COLOR, f"{entry.key_source}{score}"))
    if entry.key_box is None:
        score = "" if entry.key_score is None else f" (best score {entry.key_score:.2f})"
        title = f"keyframe {entry.keyframe}: no box above threshold{score}"
    else:
        title = f"keyframe {entry.keyframe}: {entry.key_source} box"
    return overlay_figure(frame, boxes=boxes, title=title, text=text, width=width)


def track_figure(frames, entry, masks=None, num: int = 8, text: str = ""):
    """The track over ``num`` sampled frames (TSF colour, lost frames show no box) over the referent's
    ground-truth ``masks`` (T, H, W) when given."""
    from sparrow.viz.montage import montage

    track = _entry_track(entry)
    lost = sum(b is None for b in track[entry.clip_start : entry.clip_start + len(entry.track_boxes)])
    title = f"{entry.video_id}: track ({lost} of {len(entry.track_boxes)} clip frames lost)"
    return montage(frames, masks=masks, track=track, num=num, title=title, text=text, panel_width=1.5)


def entry_crops(frames, entry, size: int | None = None):
    """The entry's crops (n, S, S, 3) uint8, recut from the frames at its crop boxes as the pipeline cut them
    (for a ``gt_mask`` entry the boxes are the mask boxes on the raw frame, close to but not exactly its crops)."""
    import numpy as np

    from sparrow.tsf.crops import crops_at_boxes

    size = size or max(32, min(frames.shape[1:3]) // 2)
    crops = crops_at_boxes(frames, entry.frame_indices, entry.crop_boxes, size)
    return (crops.permute(0, 2, 3, 1).numpy() * 255.0 + 0.5).clip(0, 255).astype(np.uint8)


def crop_strip_figure(frames, entry, size: int | None = None, panel_width: float = 0.9):
    """Every crop of the entry in time order; the ones K-means kept are framed and starred."""
    from matplotlib.patches import Rectangle

    from sparrow.viz._figures import new_figure

    crops = entry_crops(frames, entry, size)
    picked = {int(i) for i in entry.selected.tolist() if i >= 0}
    n = max(1, len(crops))
    fig = new_figure(panel_width * n + 0.3, panel_width + 0.7)
    axes = fig.subplots(1, n, squeeze=False)[0]
    for j, ax in enumerate(axes):
        ax.set_axis_off()
        if j >= len(crops):
            continue
        ax.imshow(crops[j], interpolation="nearest")
        star = "*" if j in picked else ""
        ax.set_title(f"t={entry.frame_indices[j]}{star}", fontsize="x-small")
        if j in picked:
            h, w = crops[j].shape[:2]
            ax.add_patch(Rectangle((-0.5, -0.5), w, h, fill=False, edgecolor="red", lw=2.5))
    fig.suptitle(f"{len(crops)} crops, {len(picked)} kept by K-means (framed, *)", fontsize="small")
    return fig


def pca_2d(features):
    """(n, D) -> (n, 2) principal-component coordinates (zeros where there is nothing to project)."""
    import numpy as np

    x = np.asarray(features, dtype=np.float64)
    out = np.zeros((len(x), 2))
    if len(x) < 2:
        return out
    x = x - x.mean(axis=0, keepdims=True)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    coords = x @ vt[:2].T
    out[:, : coords.shape[1]] = coords
    return out


def crop_clusters_figure(entry, k: int = 4, iters: int = 8):
    """The crop features in 2-D (PCA), coloured by TSF K-means cluster, the kept crops ringed.

    The clustering is rerun on the stored crop features with the entry's settings (deterministic, so the
    clusters are the ones that chose the entry's picks); needs ``store_crop_features`` (on for smoke/mini).
    """
    from sparrow.tsf.kmeans import tsf_kmeans
    from sparrow.viz.plots import cluster_scatter

    if entry.crop_features is None:
        raise ValueError(f"{entry.expression_id}: the entry stores no crop features (TSFConfig.store_crop_features)")
    result = tsf_kmeans(entry.crop_features, k, iters)
    picked = sorted({int(i) for i in entry.selected.tolist() if i >= 0})
    return cluster_scatter(
        pca_2d(entry.crop_features.numpy()),
        result.assignments.numpy(),
        highlight=picked,
        title=f"crop features (PCA), K={k} clusters",
        annotate=[f"t={t}" for t in entry.frame_indices],
    )


def tsf_stage_figures(dataset, entry, k: int = 4, iters: int = 8) -> dict:
    """The four stage figures of one entry of a curated ``dataset``: keyframe, track, crops, clusters."""
    from sparrow.tsf.quality import referent_boxes, referent_object

    frames = dataset.load_frames(entry.video_id)
    truth = referent_boxes(dataset, entry)
    referent = referent_object(dataset, entry)
    masks = dataset.object_masks(entry.video_id, referent) if referent is not None else None
    expression = next(e for e in dataset.expressions(entry.video_id) if e.expression_id == entry.expression_id)
    figures = {"track": track_figure(frames, entry, masks, text=expression.text)}
    if entry.keyframe is not None:
        figures = {
            "keyframe": keyframe_figure(
                frames[entry.keyframe], entry, truth[entry.keyframe] if truth else None, text=expression.text
            ),
            **figures,
        }
    figures["crops"] = crop_strip_figure(frames, entry)
    if entry.crop_features is not None:
        figures["clusters"] = crop_clusters_figure(entry, k, iters)
    return figures
