"""Figures for every notebook and the interactive mask explorer.

- :mod:`~sparrow.viz.overlay`: masks, boxes, TSF tracks and the expression drawn over a frame (numpy/OpenCV);
- :mod:`~sparrow.viz.montage`: sampled frames across time;
- :mod:`~sparrow.viz.compare`: ground truth beside predictions with per-frame J and F;
- :mod:`~sparrow.viz.curation`: notebook 01's statistics panels, curated-video montage and hard-case figure;
- :mod:`~sparrow.viz.score`: a ``sparrow score`` result's per-video J&F and per-frame J/F;
- :mod:`~sparrow.viz.plots`: bar charts of counts, histograms, loss curves, cluster scatter;
- :mod:`~sparrow.viz.export`: PNG, MP4 and GIF, written atomically;
- :mod:`~sparrow.viz.predictions` / :mod:`~sparrow.viz.tracks`: predicted masks and TSF tracks read from disk;
- :mod:`~sparrow.viz.explorer`: the ipywidgets explorer of notebook 05.

Figure functions return :class:`matplotlib.figure.Figure` objects built without pyplot (they display inline in
Jupyter and leak no global state); save them with :func:`save_figure`.
"""

from sparrow.viz.compare import FrameScores, compare_figure, jf_figure, per_frame_jf
from sparrow.viz.curation import curated_montage, hard_cases_figure, statistics_figure
from sparrow.viz.export import encode_png, save_figure, save_gif, save_mp4, save_png, save_video
from sparrow.viz.montage import montage, montage_frames, montage_image, sample_indices
from sparrow.viz.overlay import (
    BOX_COLOR,
    GT_COLOR,
    PRED_COLORS,
    TRACK_COLOR,
    BoxLayer,
    MaskLayer,
    TrackLayer,
    compose,
    overlay_figure,
)
from sparrow.viz.plots import bar_counts, cluster_scatter, histogram, loss_curves
from sparrow.viz.predictions import PredictionFolder, read_mask_png
from sparrow.viz.score import score_figure
from sparrow.viz.tracks import Track, TrackFolder, read_track


def __getattr__(name: str):
    # The explorer pulls in ipywidgets; load it only when a notebook asks for it.
    if name in ("MaskExplorer", "ExplorerConfig", "ExplorerData"):
        from sparrow.viz import explorer

        return getattr(explorer, name)
    raise AttributeError(f"module 'sparrow.viz' has no attribute {name!r}")


__all__ = [
    "BOX_COLOR",
    "GT_COLOR",
    "PRED_COLORS",
    "TRACK_COLOR",
    "BoxLayer",
    "ExplorerConfig",
    "ExplorerData",
    "FrameScores",
    "MaskExplorer",
    "MaskLayer",
    "PredictionFolder",
    "Track",
    "TrackFolder",
    "TrackLayer",
    "bar_counts",
    "cluster_scatter",
    "compare_figure",
    "compose",
    "curated_montage",
    "encode_png",
    "hard_cases_figure",
    "histogram",
    "jf_figure",
    "loss_curves",
    "montage",
    "montage_frames",
    "montage_image",
    "overlay_figure",
    "per_frame_jf",
    "read_mask_png",
    "read_track",
    "sample_indices",
    "save_figure",
    "score_figure",
    "save_gif",
    "save_mp4",
    "save_png",
    "save_video",
    "statistics_figure",
]
