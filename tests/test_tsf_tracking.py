"""The tracker box: external box files (released --tsf_boxes_txt rules), the appearance+motion tracker, SAM2."""

from __future__ import annotations

import numpy as np
import pytest

from sparrow.storage import DataError
from sparrow.tsf.quality import box_iou
from sparrow.tsf.tracking import (
    AppearanceMotionTracker,
    ExternalTracks,
    TrackerConfig,
    boxes_for_frames,
    build_tracker,
    infer_box_format,
    read_boxes_txt,
    resolve_boxes_txt,
    write_boxes_txt,
)

# -- external tracker output ----------------------------------------------------------------------------------------


def test_box_file_parsing_skips_short_lines_and_accepts_commas(tmp_path):
    path = tmp_path / "seq.txt"
    path.write_text("10\t20\t30\t40\n\n1,2\n 11, 21 31 41 extra\n")
    assert read_boxes_txt(path) == [(10.0, 20.0, 30.0, 40.0), (11.0, 21.0, 31.0, 41.0)]
    path.write_text("1 2 three 4\n")
    with pytest.raises(DataError, match="seq.txt:1"):
        read_boxes_txt(path)
    with pytest.raises(DataError, match="not found"):
        read_boxes_txt(tmp_path / "missing.txt")


def test_box_file_resolution(tmp_path):
    (tmp_path / "clip7.txt").write_text("0 0 1 1\n")
    assert resolve_boxes_txt(tmp_path, "clip7") == tmp_path / "clip7.txt"
    assert resolve_boxes_txt(tmp_path / "clip7.txt", "anything") == tmp_path / "clip7.txt"
    assert resolve_boxes_txt(str(tmp_path / "{video}.txt"), "clip7") == tmp_path / "clip7.txt"


def test_format_vote_follows_the_released_rules():
    # small boxes far from the border read validly both ways: 2 votes each, tie -> xywh
    assert infer_box_format([(10, 20, 50, 60)], 100, 100) == "xywh"
    # as xywh it would leave the image (50+90 > 100): xyxy gets the bounds vote of both readings
    assert infer_box_format([(50, 60, 90, 95)], 100, 100) == "xyxy"
    # x1 < x0: not a valid xyxy box, two votes for xywh
    assert infer_box_format([(60, 60, 20, 20)], 100, 100) == "xywh"
    assert infer_box_format([], 100, 100) == "xywh"
    # a file is decided by the sum over its lines
    assert infer_box_format([(10, 20, 50, 60), (50, 60, 90, 95), (52, 61, 92, 96)], 100, 100) == "xyxy"


def test_frame_i_uses_line_min_i_last():
    rows = [(1, 1, 2, 2), (3, 3, 2, 2)]
    boxes = boxes_for_frames(rows, 4, 100, 100)
    assert boxes == [(1, 1, 3, 3), (3, 3, 5, 5), (3, 3, 5, 5), (3, 3, 5, 5)]
    assert boxes_for_frames([], 3, 100, 100) == [None, None, None]


def test_external_tracks_read_cldtracker_output(tmp_path):
    frames = np.zeros((3, 48, 64, 3), np.uint8)
    write_boxes_txt(tmp_path / "v01.txt", [(10, 12, 20, 30), None, (11.4, 12.6, 21, 31)])
    assert (tmp_path / "v01.txt").read_text() == "10\t12\t10\t18\n10\t12\t10\t18\n11\t13\t10\t18\n"
    tracker = build_tracker(TrackerConfig(kind="external", boxes_txt=str(tmp_path)))
    track = tracker.track(frames, 0, (0, 0, 1, 1), video_id="toy/v01")
    assert track.boxes == [(10.0, 12.0, 20.0, 30.0), (10.0, 12.0, 20.0, 30.0), (11.0, 13.0, 21.0, 31.0)]
    with pytest.raises(ValueError, match="video_id"):
        ExternalTracks(tmp_path).track(frames, 0, (0, 0, 1, 1))
    with pytest.raises(ValueError, match="boxes_txt"):
        build_tracker(TrackerConfig(kind="external"))


# -- appearance + motion ----------------------------------------------------------------------------------------------


def _scene(total=12, height=64, width=96, seed=0):
    rng = np.random.default_rng(seed)
    background = rng.integers(60, 160, size=(height // 4, width // 4, 3))
    return np.kron(background, np.ones((4, 4, 1))).astype(np.uint8)[None].repeat(total, axis=0)


def _draw(frames, t, x, y, side, colour):
    h, w = frames.shape[1:3]
    x0, y0 = max(0, int(x)), max(0, int(y))
    x1, y1 = min(w, int(x) + side), min(h, int(y) + side)
    if x1 > x0 and y1 > y0:
        frames[t, y0:y1, x0:x1] = colour
        return (float(x0), float(y0), float(x1), float(y1))
    return None


def test_follows_a_moving_object_both_ways_from_the_keyframe():
    frames = _scene()
    truth = [_draw(frames, t, 5 + 6 * t, 20 + t, 12, (230, 40, 40)) for t in range(12)]
    track = AppearanceMotionTracker().track(frames, 5, truth[5])
    assert len(track.boxes) == 12 and track.boxes[5] == truth[5]
    assert min(box_iou(p, g) for p, g in zip(track.boxes, truth)) > 0.8


def test_identical_distractors_crossing_are_told_apart_by_motion():
    frames = _scene(total=14)
    target = [_draw(frames, t, 2 + 6 * t, 26, 12, (40, 80, 230)) for t in range(14)]
    other = [_draw(frames, t, 80 - 6 * t, 24, 12, (40, 80, 230)) for t in range(14)]  # same look, opposite way
    track = AppearanceMotionTracker().track(frames, 0, target[0])
    after = [box_iou(track.boxes[t], target[t]) for t in range(10, 14)]
    assert min(after) > 0.5, after
    assert max(box_iou(track.boxes[t], other[t]) for t in range(10, 14)) < 0.2


def test_target_that_leaves_is_reported_lost_then_reacquired():
    frames = _scene(total=14)
    xs = [30, 45, 60, 75, 90, 105, 120, 120, 105, 90, 75, 60, 45, 30]  # out of the 96-px frame at t=5..8
    truth = [_draw(frames, t, x, 20, 12, (235, 210, 40)) for t, x in enumerate(xs)]
    track = AppearanceMotionTracker().track(frames, 0, truth[0])
    assert all(track.boxes[t] is None for t in (6, 7))
    assert all(box_iou(track.boxes[t], truth[t]) > 0.7 for t in (10, 11, 12, 13))


def test_bad_keyframe_is_refused():
    with pytest.raises(ValueError, match="keyframe 9"):
        AppearanceMotionTracker().track(_scene(total=3), 9, (0, 0, 4, 4))


# -- SAM2 --------------------------------------------------------------------------------------------------------------


def test_sam2_video_predictor_propagates_forward_and_backward(tmp_path):
    pytest.importorskip("sam2")
    from PIL import Image

    frames = _scene(total=5, height=64, width=64)
    truth = [_draw(frames, t, 10 + 4 * t, 20, 16, (230, 40, 40)) for t in range(5)]
    paths = []
    for t, frame in enumerate(frames):
        paths.append(tmp_path / f"f{t}.png")
        Image.fromarray(frame).save(paths[-1])
    tracker = build_tracker(TrackerConfig(kind="sam2", sam2_tiny_size=256))
    track = tracker.track(frames, 2, truth[2], frame_paths=paths)
    assert track.masks is not None and track.masks.shape == (5, 64, 64) and track.masks.dtype == bool
    assert len(track.boxes) == 5 and len(track.scores) == 5
    # boxes are the masks' tight boxes (random weights: what they cover is not checked)
    for mask, box in zip(track.masks, track.boxes):
        assert (box is None) == (not mask.any())
    again = tracker.track(frames, 2, truth[2])  # same weights, frames written as JPEG instead of linked
    assert again.masks.shape == track.masks.shape
