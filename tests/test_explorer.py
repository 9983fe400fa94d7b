"""The mask explorer without a browser: every control changes the image it sends, checked on pixels."""

from __future__ import annotations

import numpy as np
import pytest

from sparrow.viz.explorer import ExplorerConfig, MaskExplorer, ViewOptions, render
from sparrow.viz.overlay import BOX_COLOR, GT_COLOR, TRACK_COLOR, pred_color

H, W, T = 48, 64, 8
SCALE = 6  # ceil(256 / 48): small videos are enlarged to at least 256 px


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from sparrow.viz.demo import build_demo_set

    return build_demo_set(tmp_path_factory.mktemp("explorer"), height=H, width=W, num_frames=T, num_videos=2)


@pytest.fixture()
def explorer(demo) -> MaskExplorer:
    return MaskExplorer(
        demo.curated,
        predictions=demo.predictions,
        tracks=demo.tracks,
        video_id="demo/video0",
        expression_id="demo/video0/0",
    )


def count(image: np.ndarray, color) -> int:
    return int((image == np.asarray(color, np.uint8)).all(axis=2).sum())


BASELINE, SPARROW = pred_color(0), pred_color(1)


def test_initial_view_is_side_by_side_with_both_models(explorer) -> None:
    image = explorer.current_image()
    assert image.shape == (H * SCALE, 2 * W * SCALE + explorer.config.panel_gap, 3)
    left, right = image[:, : W * SCALE], image[:, -W * SCALE :]
    assert count(left, BASELINE) > 50 and count(left, SPARROW) == 0
    assert count(right, SPARROW) > 50 and count(right, BASELINE) == 0
    assert count(left, GT_COLOR) > 50 and count(right, GT_COLOR) > 50
    np.testing.assert_array_equal(image, render(explorer.view, 0, explorer.options(), explorer.config.panel_gap))
    assert "red circle" in explorer.text.value


def test_frame_slider_updates_the_image(explorer) -> None:
    before = explorer.current_image()
    explorer.frame.value = 5
    after = explorer.current_image()
    assert not np.array_equal(before, after)
    np.testing.assert_array_equal(after, render(explorer.view, 5, explorer.options(), explorer.config.panel_gap))
    assert "frame 5 / 7" in explorer.frame_info.value
    assert explorer.play.max == explorer.frame.max == T - 1


def test_ground_truth_and_model_toggles(explorer) -> None:
    explorer.side_by_side.value = False
    single = explorer.current_image()
    assert single.shape == (H * SCALE, W * SCALE, 3)
    assert count(single, GT_COLOR) > 0 and count(single, BASELINE) > 0 and count(single, SPARROW) > 0
    explorer.show_gt.value = False
    assert count(explorer.current_image(), GT_COLOR) == 0
    explorer.show_models[0].value = False
    image = explorer.current_image()
    assert count(image, BASELINE) == 0 and count(image, SPARROW) > 0
    explorer.show_models[1].value = False
    image = explorer.current_image()
    assert count(image, SPARROW) == 0
    np.testing.assert_array_equal(image, explorer.view.frames[0])  # nothing drawn: the plain frame
    explorer.show_gt.value = True
    assert count(explorer.current_image(), GT_COLOR) > 0


def test_boxes_and_tsf_toggles(explorer) -> None:
    explorer.side_by_side.value = False
    assert count(explorer.current_image(), BOX_COLOR) == 0
    explorer.show_boxes.value = True
    assert count(explorer.current_image(), BOX_COLOR) > 20
    explorer.show_boxes.value = False
    assert count(explorer.current_image(), TRACK_COLOR) == 0
    explorer.show_tsf.value = True
    with_track = explorer.current_image()
    assert count(with_track, TRACK_COLOR) > 20
    side = max(16, min(H, W) * SCALE // 4)
    inset = with_track[1 : 1 + side, W * SCALE - side - 1 : W * SCALE - 1]
    assert (inset == (200, 60, 40)).all(axis=2).mean() > 0.3  # the crop shows the red target
    assert "TSF" not in explorer.notes.value


def test_opacity_changes_only_masked_pixels(explorer) -> None:
    explorer.side_by_side.value = False
    for box in explorer.show_models:
        box.value = False
    low = explorer.current_image().astype(int)
    explorer.opacity.value = 0.9
    high = explorer.current_image().astype(int)
    changed = (low != high).any(axis=2)
    gt = explorer.view.gt[0]
    assert changed.any() and not changed[~gt].any()
    inside = gt & changed
    assert (np.abs(high[inside] - GT_COLOR).sum(axis=1) < np.abs(low[inside] - GT_COLOR).sum(axis=1)).all()


def test_side_by_side_toggle(explorer) -> None:
    explorer.side_by_side.value = False
    assert explorer.current_image().shape[1] == W * SCALE
    explorer.side_by_side.value = True
    assert explorer.current_image().shape[1] == 2 * W * SCALE + explorer.config.panel_gap
    explorer.show_models[0].value = False  # one model left: ground truth panel first, then the model
    image = explorer.current_image()
    assert image.shape[1] == 2 * W * SCALE + explorer.config.panel_gap
    assert count(image[:, : W * SCALE], SPARROW) == 0 and count(image[:, -W * SCALE :], SPARROW) > 0


def test_video_and_expression_pickers(explorer) -> None:
    first = explorer.current_image()
    explorer.expression.value = "demo/video0/1"  # the square
    square = explorer.current_image()
    assert not np.array_equal(first, square)
    assert "square" in explorer.text.value
    np.testing.assert_array_equal(
        explorer.view.gt, np.repeat(np.repeat(explorer.data.ground_truth(explorer.view.expression), SCALE, 1), SCALE, 2)
    )
    assert explorer.split.options == ("valid", "train")  # evaluation splits first
    explorer.split.value = "train"
    assert explorer.video.options == ("demo/video1",)
    assert explorer.video.value == "demo/video1" and explorer.expression.value == "demo/video1/0"
    assert not np.array_equal(explorer.current_image(), first)
    np.testing.assert_array_equal(
        explorer.view.frames[0][::SCALE, ::SCALE], explorer.data.dataset.load_frames("demo/video1", [0])[0]
    )


def test_missing_prediction_shows_a_note(explorer) -> None:
    explorer.expression.value = "demo/video0/2"  # the demo has no prediction for "both shapes"
    assert explorer.notes.value.count("no prediction for this expression") == 2
    assert "pred_sparrow/video0/2" in explorer.notes.value
    image = explorer.current_image()
    assert count(image, BASELINE) == 0 and count(image, SPARROW) == 0 and count(image, GT_COLOR) > 0
    assert "needs a prediction" in explorer.strip.children[0].value


def test_jf_strip_click_jumps_to_the_frame(explorer) -> None:
    from sparrow.viz.compare import per_frame_jf

    assert len(explorer.strip.children) == 4  # J and F rows for baseline and SPARROW
    assert all(len(row) == T for row in explorer._strip_buttons)
    truth = per_frame_jf(
        explorer.data.ground_truth(explorer.view.expression),
        explorer.data.prediction(explorer.data.models[0], explorer.view.expression).masks,
    )
    button = explorer._strip_buttons[0][6]
    assert button.tooltip == f"frame 6: J = {truth.j[6]:.3f}"
    button.click()
    assert explorer.frame.value == 6
    np.testing.assert_array_equal(
        explorer.current_image(), render(explorer.view, 6, explorer.options(), explorer.config.panel_gap)
    )
    assert explorer._strip_buttons[0][6].layout.border == "2px solid black"
    explorer._strip_buttons[3][2].click()
    assert explorer.frame.value == 2 and explorer._strip_buttons[0][6].layout.border == ""
    assert set(explorer.shown_scores()) == {"baseline", "SPARROW"}
    assert explorer.shown_scores()["SPARROW"].mean_j > explorer.shown_scores()["baseline"].mean_j


def test_without_predictions_or_tracks(demo) -> None:
    explorer = MaskExplorer(demo.curated, config=ExplorerConfig(min_display_height=96))
    image = explorer.current_image()
    assert image.shape == (2 * H, 2 * W, 3)  # one panel, enlarged twice to reach 96 px
    assert explorer.side_by_side.value is False and explorer.show_tsf.disabled
    assert "No prediction folders given" in explorer.notes.value and "No TSF track folder" in explorer.notes.value
    assert explorer.data.counts() == {
        "videos": 2,
        "expressions": 6,
        "videos/train": 1,
        "expressions/train": 3,
        "videos/valid": 1,
        "expressions/valid": 3,
    }
    absent = MaskExplorer(demo.curated, predictions={"SPARROW": demo.curated / "nowhere", "skipped": None})
    assert [m.name for m in absent.data.models] == ["SPARROW"]
    assert "no prediction for this expression" in absent.notes.value


def test_render_rejects_a_frame_outside_the_video(explorer) -> None:
    with pytest.raises(IndexError, match="outside"):
        render(explorer.view, T, ViewOptions())


def test_starts_on_an_annotated_expression_and_notes_unannotated_ones(demo, tmp_path) -> None:
    import shutil

    from sparrow.storage import iter_jsonl, write_jsonl

    root = tmp_path / "curated"
    shutil.copytree(demo.curated, root)
    rows = list(iter_jsonl(root / "expressions.jsonl"))
    for row in rows:
        if row["video_id"] == "demo/video0":  # the "valid" video, like an unannotated evaluation split
            row["object_ids"] = []
    write_jsonl(root / "expressions.jsonl", rows)
    explorer = MaskExplorer(root)
    assert (explorer.split.value, explorer.video.value, explorer.expression.value) == (
        "train",
        "demo/video1",
        "demo/video1/0",
    )
    assert count(explorer.current_image(), GT_COLOR) > 0
    explorer.split.value = "valid"
    assert explorer.expression.value == "demo/video0/0"
    assert "no ground-truth referent" in explorer.notes.value
    assert count(explorer.current_image(), GT_COLOR) == 0
    with pytest.raises(KeyError, match="no expression"):
        MaskExplorer(root, video_id="demo/video0", expression_id="demo/video1/0")
    by_id = MaskExplorer(root, expression_id="demo/video0/2")  # the video follows from the expression
    assert (by_id.split.value, by_id.video.value, by_id.expression.value) == ("valid", "demo/video0", "demo/video0/2")


def test_caches_are_bounded(demo) -> None:
    from sparrow.data.curated import CuratedDataset
    from sparrow.viz.explorer import ExplorerData

    data = ExplorerData(
        CuratedDataset(demo.curated), {"baseline": demo.baseline}, cached_videos=1, cached_expressions=2
    )
    first = data.frames("demo/video0")
    assert data.frames("demo/video0") is first  # cached
    data.frames("demo/video1")
    assert list(data._frames) == ["demo/video1"]
    expressions = data.expressions("demo/video0")
    for e in expressions:
        data.ground_truth(e)
        data.scores(data.models[0], e)
    assert list(data._gt) == [("demo/video0", "demo/video0/1"), ("demo/video0", "demo/video0/2")]
    assert len(data._scores) == 2


def test_recorded_numbers_name_counts_and_each_models_j_and_f(explorer) -> None:
    from sparrow.viz.explorer import recorded_numbers

    numbers = {n["name"]: n for n in recorded_numbers(explorer)}
    counts = explorer.data.counts()
    assert all(numbers[f"browsable/{k}"]["value"] == v for k, v in counts.items())
    assert numbers["shown_example/expression"]["value"] == explorer.view.expression.expression_id
    scores = explorer.shown_scores()
    assert numbers["shown_example/SPARROW/J"]["value"] == scores["SPARROW"].mean_j
    assert numbers["shown_example/baseline/F"]["value"] == scores["baseline"].mean_f
    assert len(numbers) == len(counts) + 1 + 2 * len(scores)
