"""Static figures of ``sparrow.viz``: overlays, montages, comparisons with J/F, plots, export, readers."""

from __future__ import annotations

import base64
import io
import json

import av
import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

from sparrow.eval.export import write_expression_masks
from sparrow.storage import DataError
from sparrow.viz import (
    BOX_COLOR,
    GT_COLOR,
    TRACK_COLOR,
    BoxLayer,
    MaskLayer,
    TrackLayer,
    bar_counts,
    cluster_scatter,
    compare_figure,
    compose,
    encode_png,
    histogram,
    loss_curves,
    montage,
    montage_image,
    overlay_figure,
    per_frame_jf,
    read_mask_png,
    read_track,
    sample_indices,
    save_figure,
    save_gif,
    save_mp4,
    save_png,
    save_video,
)
from sparrow.viz.overlay import blend_mask, crop_box, draw_box, draw_contours
from sparrow.viz.predictions import PredictionFolder
from sparrow.viz.tracks import TrackFolder


def _frame(h: int = 40, w: int = 60, value: int = 100) -> np.ndarray:
    return np.full((h, w, 3), value, np.uint8)


def _square(h: int = 40, w: int = 60, y0: int = 10, x0: int = 20, size: int = 12) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[y0 : y0 + size, x0 : x0 + size] = True
    return m


# -- overlay ---------------------------------------------------------------------------------------------------


def test_blend_mask_changes_only_the_mask_pixels_by_alpha() -> None:
    image, mask = _frame(), _square()
    blend_mask(image, mask, (200, 0, 50), 0.5)
    assert (image[~mask] == 100).all()
    np.testing.assert_array_equal(image[mask][0], [150, 50, 75])
    full = blend_mask(_frame(), mask, (200, 0, 50), 1.0)
    assert (full[mask] == [200, 0, 50]).all()
    untouched = blend_mask(_frame(), mask, (200, 0, 50), 0.0)
    assert (untouched == 100).all()
    with pytest.raises(ValueError, match="alpha"):
        blend_mask(_frame(), mask, (1, 2, 3), 1.5)
    with pytest.raises(ValueError, match="mask of shape"):
        blend_mask(_frame(), np.zeros((5, 5), bool), (1, 2, 3), 0.5)


def test_contours_outline_the_mask_and_leave_the_interior() -> None:
    image, mask = _frame(), _square()
    draw_contours(image, mask, GT_COLOR, 1)
    colored = (image == GT_COLOR).all(axis=2)
    assert colored[10, 20:32].all() and colored[21, 20:32].all()  # top and bottom rows of the square
    assert not colored[15, 25] and not colored[0, 0]
    assert colored.sum() == 4 * 12 - 4


def test_box_uses_exclusive_max() -> None:
    image = draw_box(_frame(), [20, 10, 32, 22], BOX_COLOR, 1)
    colored = (image == BOX_COLOR).all(axis=2)
    assert colored[10, 20] and colored[21, 31] and not colored[22, 32]
    assert colored.sum() == 4 * 12 - 4
    with pytest.raises(ValueError, match="4 numbers"):
        draw_box(_frame(), [1, 2, 3], BOX_COLOR)


def test_crop_box_rounds_outwards_and_clamps() -> None:
    frame = np.arange(40 * 60 * 3, dtype=np.uint32).reshape(40, 60, 3).astype(np.uint8)
    crop = crop_box(frame, [2.5, 3.2, 10.1, 8.0])
    np.testing.assert_array_equal(crop, frame[3:8, 2:11])
    assert crop_box(frame, [-5, -5, 100, 100]).shape == (40, 60, 3)
    assert crop_box(frame, [0, 0, 10, 10], size=16).shape == (16, 16, 3)


def test_compose_draws_outlines_over_every_fill_and_does_not_modify_the_frame() -> None:
    frame = _frame()
    a, b = _square(), _square(y0=14, x0=24)
    out = compose(frame, [MaskLayer(a, GT_COLOR), MaskLayer(b, (255, 0, 255))], alpha=0.5, thickness=1)
    assert (frame == 100).all()
    assert (out[10, 25] == GT_COLOR).all()  # a's top edge, outside b
    assert (out[14, 30] == (255, 0, 255)).all()  # b's top edge lies inside a: still b's colour
    inside_both = out[18, 28]
    assert not (inside_both == 100).all() and not (inside_both == GT_COLOR).all()


def test_track_layer_draws_box_trail_and_the_crop_inset() -> None:
    frame = np.zeros((64, 64, 3), np.uint8)
    frame[20:30, 20:30] = (10, 200, 30)
    boxes = [[20 - t, 20, 30 - t, 30] for t in range(5)]
    out = compose(frame, track=TrackLayer(boxes, 0, TRACK_COLOR), thickness=1)
    inset_side = 16
    inset = out[1 : 1 + inset_side, 64 - inset_side - 1 : 63]
    assert (inset == (10, 200, 30)).all(axis=2).mean() > 0.9  # the crop of the target fills the inset
    assert (out == TRACK_COLOR).all(axis=2).sum() > 30
    trail = compose(np.zeros_like(frame), track=TrackLayer(boxes, 4, TRACK_COLOR, crop_inset=False), thickness=1)
    assert (trail[25, 21:26] != 0).any(axis=1).all()  # centre trail from x=25 back to x=21
    assert (trail[25, 27:] == 0).all()


def test_overlay_figure_returns_a_figure_with_the_composed_image(tmp_path) -> None:
    fig = overlay_figure(
        _frame(),
        [MaskLayer(_square(), GT_COLOR, "ground truth")],
        [BoxLayer([18, 8, 34, 24], BOX_COLOR, "object 1")],
        text="the square",
    )
    assert isinstance(fig, Figure)
    shown = np.asarray(fig.axes[0].images[0].get_array())
    assert (shown[10, 25] == GT_COLOR).all() and (shown[8, 25] == BOX_COLOR).all()
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == ["ground truth", "object 1"]
    path = save_figure(fig, tmp_path / "fig" / "overlay.png")
    assert Image.open(path).format == "PNG"


# -- montage and compare ----------------------------------------------------------------------------------------


def test_sample_indices_spread_first_to_last() -> None:
    assert sample_indices(10, 4) == [0, 3, 6, 9]
    assert sample_indices(3, 8) == [0, 1, 2]
    assert sample_indices(0, 4) == []


def test_montage_panels_and_tiled_image() -> None:
    frames = np.stack([_frame(value=v) for v in range(0, 100, 10)])
    masks = np.stack([_square(x0=2 * t) for t in range(10)])
    fig = montage(frames, masks, indices=[0, 5, 9], text="moving square")
    images = [ax for ax in fig.axes if ax.images]
    assert len(images) == 3
    assert [ax.get_title() for ax in images] == ["t=0", "t=5", "t=9"]
    tiled = montage_image(frames, {"a": masks, "b": masks[::-1]}, num=4, cols=2, gap=2)
    assert tiled.shape == (2 * 40 + 2, 2 * 60 + 2, 3)
    with pytest.raises(ValueError, match="frames"):
        montage(frames, masks[:3])


def test_montage_draws_boxes_and_the_track_per_frame() -> None:
    from sparrow.viz import jf_figure, montage_frames
    from sparrow.viz.compare import FrameScores

    frames = np.stack([_frame() for _ in range(3)])
    boxes = {"object 1": [[20, 10, 32, 22], None, [22, 10, 34, 22]]}
    track = [[5, 5, 15, 15], [6, 5, 16, 15], None]
    images = montage_frames(frames, boxes=boxes, track=track)
    assert (images[0] == BOX_COLOR).all(axis=2).sum() == 4 * 12 - 4
    assert (images[1] == BOX_COLOR).all(axis=2).sum() == 0
    assert (images[1] == TRACK_COLOR).all(axis=2).sum() > 0 and (images[2] == TRACK_COLOR).all(axis=2).sum() == 0
    fig = jf_figure({"SPARROW": FrameScores(np.array([1.0, 0.5]), np.array([0.8, 0.4]))}, title="J/F")
    np.testing.assert_array_equal(fig.axes[0].lines[1].get_ydata(), [0.8, 0.4])
    assert "mean 0.750" in fig.axes[0].get_legend().get_texts()[0].get_text()


def test_per_frame_jf_equals_the_eval_functions() -> None:
    from sparrow.eval.jf import contour_accuracy, region_similarity

    gt = np.stack([_square(x0=10 + t) for t in range(4)])
    pred = np.stack([_square(x0=12 + 2 * t) for t in range(4)])
    scores = per_frame_jf(gt, pred)
    np.testing.assert_array_equal(scores.j, np.asarray(region_similarity(gt, pred), float))
    np.testing.assert_array_equal(scores.f, np.asarray(contour_accuracy(gt, pred), float))
    assert scores.j[0] == pytest.approx((12 * 10) / (12 * 14))
    assert scores.j[0] > scores.j[3]
    with pytest.raises(ValueError, match="equal"):
        per_frame_jf(gt, pred[:2])


def test_compare_figure_titles_carry_per_frame_scores() -> None:
    frames = np.stack([_frame() for _ in range(5)])
    gt = np.stack([_square() for _ in range(5)])
    good, bad = gt.copy(), np.roll(gt, 8, axis=2)
    fig = compare_figure(frames, gt, {"SPARROW": good, "baseline": bad}, indices=[0, 4], text="the square")
    titles = [ax.get_title() for ax in fig.axes if ax.images]
    assert titles[:3] == [
        "GT t=0",
        "SPARROW: J 1.00 F 1.00",
        f"baseline: J {per_frame_jf(gt, bad).j[0]:.2f} F {per_frame_jf(gt, bad).f[0]:.2f}",
    ]
    curve_ax = [ax for ax in fig.axes if not ax.images][0]
    assert len(curve_ax.lines) == 4 + 2  # J and F per model, two frame markers


# -- plots -------------------------------------------------------------------------------------------------------


def test_bar_counts_plain_and_grouped() -> None:
    fig = bar_counts({"mevis": 12, "davis": 5}, title="videos")
    heights = [p.get_height() for p in fig.axes[0].patches]
    assert heights == [12, 5]
    fig = bar_counts({"mevis": {"videos": 12, "qa": 30}, "davis": {"videos": 5}}, horizontal=True)
    widths = sorted(p.get_width() for p in fig.axes[0].patches)
    assert widths == [0, 5, 12, 30]
    with pytest.raises(ValueError):
        bar_counts({})


def test_histogram_counts_every_value() -> None:
    values = np.arange(100)
    fig = histogram(values, bins=10)
    assert sum(p.get_height() for p in fig.axes[0].patches) == 100
    fig = histogram({"a": [1, 2, 3], "b": [2, 3, 4, 5]}, bins=4)
    assert len(fig.axes[0].patches) == 2


def test_loss_curves_raw_and_smoothed() -> None:
    fig = loss_curves({"train": [4.0, 3.0, 2.0, 1.0]})
    np.testing.assert_array_equal(fig.axes[0].lines[0].get_ydata(), [4, 3, 2, 1])
    fig = loss_curves({"train": (np.array([0, 10, 20, 30, 40]), np.array([5.0, 1.0, 5.0, 1.0, 5.0]))}, smooth=3)
    raw, smooth = fig.axes[0].lines
    np.testing.assert_allclose(smooth.get_ydata(), [3.0, 11 / 3, 7 / 3, 11 / 3, 3.0])
    np.testing.assert_array_equal(raw.get_xdata(), [0, 10, 20, 30, 40])
    with pytest.raises(ValueError, match="steps"):
        loss_curves({"x": ([0, 1], [1.0])})


def test_cluster_scatter_rings_the_medoids() -> None:
    pts = np.array([[0, 0], [1, 0], [5, 5], [6, 5]], float)
    fig = cluster_scatter(pts, [0, 0, 1, 1], highlight=[1, 2])
    collections = fig.axes[0].collections
    assert len(collections) == 3
    np.testing.assert_array_equal(collections[-1].get_offsets(), pts[[1, 2]])


# -- export ------------------------------------------------------------------------------------------------------


def test_png_roundtrip_is_exact(tmp_path) -> None:
    image = np.random.default_rng(0).integers(0, 255, (33, 47, 3), dtype=np.uint8)
    path = save_png(image, tmp_path / "a" / "x.png")
    np.testing.assert_array_equal(np.asarray(Image.open(path)), image)
    for fast in (False, True):
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(encode_png(image, 1, fast)))), image)


def test_mp4_and_gif_hold_every_frame(tmp_path) -> None:
    frames = np.stack([np.full((33, 47, 3), 20 * t, np.uint8) for t in range(6)])
    mp4 = save_mp4(frames, tmp_path / "v.mp4", fps=5)
    with av.open(str(mp4)) as container:
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(decoded) == 6 and decoded[0].shape == (34, 48, 3)  # padded to even sizes for yuv420p
    means = [float(f[:33, :47].mean()) for f in decoded]
    np.testing.assert_allclose(means, [20 * t for t in range(6)], atol=3)
    gif = save_video(frames, tmp_path / "v.gif", fps=5)
    with Image.open(gif) as img:
        assert img.n_frames == 6 and img.size == (47, 33)
        img.seek(3)
        assert abs(np.asarray(img.convert("RGB")).mean() - 60) < 3
    with pytest.raises(ValueError, match="mp4 or .gif"):
        save_video(frames, tmp_path / "v.avi")
    with pytest.raises(ValueError, match="one size"):
        save_gif([frames[0], frames[0][:10]], tmp_path / "bad.gif")
    assert not (tmp_path / "bad.gif").exists()


# -- predictions and tracks on disk --------------------------------------------------------------------------------


def test_prediction_folder_reads_the_server_layout(tmp_path, demo_set) -> None:
    from sparrow.data.curated import CuratedDataset

    ds = CuratedDataset(demo_set.curated)
    video = ds.video("demo/video0")
    masks = np.stack([_square(video.height, video.width, 4, 2 + t, 8) for t in range(video.num_frames)])
    root = tmp_path / "preds"
    folder = root / "video0" / "0"
    assert write_expression_masks(root, "video0", "0", video.frame_names, masks)[0].parent == folder
    assert PredictionFolder(root).expression_dir(video.video_id, "demo/video0/0") == folder
    assert np.unique(np.asarray(Image.open(folder / f"{video.frame_names[0]}.png"))).tolist() == [0, 255]
    (folder / f"{video.frame_names[2]}.png").unlink()
    loaded = PredictionFolder(root, "mine").load(video, "demo/video0/0")
    assert loaded.num_missing == 1 and not loaded.present[2]
    np.testing.assert_array_equal(loaded.masks[loaded.present], masks[loaded.present])
    assert not loaded.masks[2].any()
    assert PredictionFolder(root).load(video, "demo/video0/1") is None
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(folder / f"{video.frame_names[0]}.png")
    with pytest.raises(DataError, match="5x5"):
        PredictionFolder(root).load(video, "demo/video0/0")
    (folder / f"{video.frame_names[1]}.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="not a readable image"):
        read_mask_png(folder / f"{video.frame_names[1]}.png")


@pytest.mark.parametrize("layout", ["video/local", "video_id/local"])
def test_prediction_folder_reads_only_the_server_names(tmp_path, demo_set, layout) -> None:
    from sparrow.data.curated import CuratedDataset

    video = CuratedDataset(demo_set.curated).video("demo/video0")
    folder = {"video/local": tmp_path / "video0" / "1", "video_id/local": tmp_path / "demo" / "video0" / "1"}[layout]
    masks = np.zeros((video.num_frames, video.height, video.width), bool)
    masks[:, 3:9, 4:12] = True
    for name, mask in zip(video.frame_names, masks):
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(mask.astype(np.uint8) * 255).save(folder / f"{name}.png")
    loaded = PredictionFolder(tmp_path).load(video, "demo/video0/1")
    if layout != "video/local":
        assert loaded is None
        return
    assert loaded is not None and loaded.complete
    np.testing.assert_array_equal(loaded.masks, masks)


def test_track_files_json_and_txt(tmp_path) -> None:
    p = tmp_path / "t.json"
    p.write_text(json.dumps({"format": "xywh", "boxes": [[1, 2, 3, 4], None, [0, 0, 0, 5]], "crop_frames": [0, 9]}))
    track = read_track(p, num_frames=4, width=20, height=20)
    assert track.boxes == ([1.0, 2.0, 4.0, 6.0], None, None, None)
    assert track.crop_frames == (0,)
    p.write_text(json.dumps([[1, 2, 5, 6], [2, 2, 6, 6]]))
    assert read_track(p, 2, 20, 20).boxes == ([1.0, 2.0, 5.0, 6.0], [2.0, 2.0, 6.0, 6.0])
    txt = tmp_path / "seq.txt"
    txt.write_text("1\t2\t3\t4\n5,6,3,4\n")
    assert read_track(txt, 3, 20, 20).boxes == ([1.0, 2.0, 4.0, 6.0], [5.0, 6.0, 8.0, 10.0], [5.0, 6.0, 8.0, 10.0])
    p.write_text(json.dumps({"boxes": [[1, 2, "x", 4]]}))
    with pytest.raises(DataError, match="not numeric"):
        read_track(p, 1, 20, 20)
    p.write_text(json.dumps({"boxes": [[1, 2, 3]]}))
    with pytest.raises(DataError, match="4 numbers"):
        read_track(p, 1, 20, 20)
    p.write_text("{")
    with pytest.raises(DataError, match="invalid JSON"):
        read_track(p, 1, 20, 20)
    with pytest.raises(DataError, match=".txt"):
        read_track(tmp_path / "t.csv", 1, 20, 20)


def test_track_folder_prefers_the_expression_file(tmp_path) -> None:
    folder = TrackFolder(tmp_path)
    (tmp_path / "vid.txt").write_text("0 0 2 2\n")  # CLDTracker's per-sequence file
    assert folder.find("src/vid", "src/vid/1") == tmp_path / "vid.txt"
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "vid.txt").write_text("0 0 2 2\n")
    assert folder.find("src/vid", "src/vid/1") == tmp_path / "src" / "vid.txt"
    (tmp_path / "vid").mkdir()
    (tmp_path / "vid" / "1.json").write_text("[[0, 0, 3, 3]]")
    assert folder.load("src/vid", "src/vid/1", 2, 10, 10).boxes == ([0.0, 0.0, 3.0, 3.0], None)
    assert folder.find("other/vid2", "other/vid2/1") is None


@pytest.fixture()
def demo_set(tmp_path):
    from sparrow.viz.demo import build_demo_set

    return build_demo_set(tmp_path / "demo", height=48, width=64, num_frames=6)


def test_figures_display_inline_in_ipython() -> None:
    from IPython.core.interactiveshell import InteractiveShell

    from sparrow.viz import _figures

    shell = InteractiveShell.instance()
    try:
        _figures._FORMATTER_READY = False
        fig = bar_counts({"a": 1})
        data, _ = shell.display_formatter.format(fig)
        png = data["image/png"]
        assert (base64.b64decode(png) if isinstance(png, str) else png)[:4] == b"\x89PNG"
    finally:
        InteractiveShell.clear_instance()
        _figures._FORMATTER_READY = False
