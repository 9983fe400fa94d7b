"""Target crops: frame sampling, the released clamp/fallback rules, tracked-box crops of raw frames or a float
video, and the ground-truth-mask variant on raw clips and on encoder frames."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sparrow.tsf.crops import (
    aligned_mask_frame,
    clip_preprocess,
    crops_at_boxes,
    fill_missing_boxes,
    ground_truth_mask_crops,
    mask_box_crops,
    normalised_mask_box,
    pixel_box,
    sample_frame_indices,
    to_float_image,
    tracked_box_crops,
)


def test_frame_sampling_follows_the_encoder():
    assert sample_frame_indices(5) == [0, 1, 2, 3, 4]
    assert sample_frame_indices(16) == list(range(16))
    assert sample_frame_indices(40) == np.linspace(0, 39, 16, dtype=int).tolist()
    assert sample_frame_indices(40)[:3] == [0, 2, 5]
    assert sample_frame_indices(0) == []


def test_pixel_box_floor_ceil_and_clamps():
    assert pixel_box((2.7, 3.2, 10.1, 12.0), 64, 48) == (2, 3, 11, 12)
    assert pixel_box((-5, -5, 100, 100), 64, 48) == (0, 0, 64, 48)
    assert pixel_box((70, 50, 80, 60), 64, 48) == (63, 47, 64, 48)  # off-image box keeps one pixel
    assert pixel_box((10, 10, 10, 10), 64, 48) == (10, 10, 11, 11)  # empty box keeps one pixel


def test_missing_boxes_reuse_the_previous_or_the_whole_frame():
    boxes, filled = fill_missing_boxes([None, (1, 2, 3, 4), None, None, (5, 6, 7, 8)], 64, 48)
    assert boxes == [(0, 0, 64, 48), (1, 2, 3, 4), (1, 2, 3, 4), (1, 2, 3, 4), (5, 6, 7, 8)]
    assert filled == 3


def test_crops_are_cut_from_raw_frames_at_the_boxes():
    frames = np.zeros((3, 48, 64, 3), dtype=np.uint8)
    frames[:, 10:20, 30:40] = (255, 0, 0)
    frames[1, 0:8, 0:8] = (0, 255, 0)
    crops = crops_at_boxes(frames, [0, 1, 2], [(30, 10, 40, 20), (0, 0, 8, 8), (30.4, 10.6, 39.2, 19.1)], size=16)
    assert crops.shape == (3, 3, 16, 16) and crops.dtype == torch.float32
    assert torch.allclose(crops[0], torch.tensor([1.0, 0.0, 0.0])[:, None, None].expand(3, 16, 16), atol=1e-5)
    assert torch.allclose(crops[1], torch.tensor([0.0, 1.0, 0.0])[:, None, None].expand(3, 16, 16), atol=1e-5)
    assert torch.allclose(crops[2], crops[0], atol=1e-5)  # floor/ceil of a sub-pixel box = the same window
    with pytest.raises(ValueError, match="3 frame indices but 2 boxes"):
        crops_at_boxes(frames, [0, 1, 2], [(0, 0, 1, 1)] * 2, size=8)


def test_clip_preprocess_resizes_the_short_side_and_centre_crops():
    image = torch.zeros(3, 20, 40)
    image[0, :, :10] = 1.0  # left quarter red: cut away by the centre crop
    image[2, :, 10:30] = 1.0  # middle half blue: kept
    out = clip_preprocess(image, 10)
    assert out.shape == (3, 10, 10)
    # interior columns (the antialiased resize blurs one column at each colour edge)
    assert out[0, :, 1:-1].max() < 1e-4 and out[2, :, 1:-1].min() > 1 - 1e-4
    assert out[0, :, 0].max() < 0.1


def test_aligned_mask_frame_formula():
    assert [aligned_mask_frame(s, 16, 8) for s in (0, 1, 8, 15)] == [0, 0, 4, 7]  # round(s/15*7)
    assert aligned_mask_frame(3, 1, 8) == 0 and aligned_mask_frame(3, 16, 1) == 0


def test_normalised_mask_box_is_exclusive_and_relative():
    mask = np.zeros((10, 20), dtype=bool)
    mask[2:5, 4:8] = True
    assert normalised_mask_box(mask) == (4 / 20, 2 / 10, 8 / 20, 5 / 10)
    assert normalised_mask_box(np.zeros((3, 3), bool)) is None


def test_ground_truth_mask_crops_follow_the_released_rules():
    total, size = 6, 16  # frames already 16 px: the CLIP resize is the identity, colours stay exact
    frames = np.zeros((total, 16, 16, 3), dtype=np.uint8)
    first = np.zeros((total, 16, 16), dtype=bool)
    second = np.zeros((total, 16, 16), dtype=bool)
    second[:, 0:8, 0:8] = True  # second referent always visible (top-left)
    first[2:, 8:16, 8:16] = True  # first referent from frame 2 on (bottom-right)
    frames[:, 8:16, 8:16] = (0, 0, 255)
    frames[:, 0:8, 0:8] = (255, 0, 0)
    crops, indices, boxes = ground_truth_mask_crops(frames, [first, second], size, num_frames=16, num_mask_frames=3)
    assert indices == list(range(total)) and crops.shape == (total, 3, size, size)
    # mask frames are linspace(0, 5, 3) = 0, 2, 5; context s maps to round(s / 5 * 2)
    assert [aligned_mask_frame(s, total, 3) for s in range(total)] == [0, 0, 1, 1, 2, 2]
    # context 0, 1 use mask frame 0, where the first referent is absent: the second one's box (red)
    assert boxes[0] == boxes[1] == (0.0, 0.0, 0.5, 0.5)
    assert crops[0, 0].min() > 0.99 and crops[0, 2].max() < 0.01
    # later frames use the first referent (blue): it has priority whenever it is visible
    assert boxes[2] == (0.5, 0.5, 1.0, 1.0)
    assert crops[5, 2].min() > 0.99


def test_ground_truth_mask_crops_without_any_mask_use_whole_frames():
    frames = np.random.default_rng(0).integers(0, 255, size=(4, 16, 16, 3), dtype=np.uint8)
    crops, _, boxes = ground_truth_mask_crops(frames, [np.zeros((4, 16, 16), bool)], 16, num_mask_frames=8)
    assert boxes == [(0.0, 0.0, 1.0, 1.0)] * 4
    expected = torch.from_numpy(frames[0]).permute(2, 0, 1).float() / 255
    assert torch.allclose(crops[0], expected, atol=1e-5)


def test_crops_of_a_float_video_equal_crops_of_its_uint8_frames():
    frames = np.random.default_rng(1).integers(0, 255, size=(3, 30, 50, 3), dtype=np.uint8)
    boxes = [(3.5, 2.2, 40.1, 17.0), (0, 0, 50, 30), (20, 10, 24, 29)]
    raw = crops_at_boxes(frames, [0, 2, 1], boxes, size=12)
    video = to_float_image(frames)
    assert video.shape == (3, 3, 30, 50)
    assert torch.equal(crops_at_boxes(video, [0, 2, 1], boxes, size=12), raw)
    batched = clip_preprocess(video, 12)  # one call over a batch = one call per image
    assert torch.equal(batched, torch.stack([clip_preprocess(v, 12) for v in video]))


def test_tracked_box_crops_sample_16_frames_and_fill_lost_rows():
    frames = np.random.default_rng(2).integers(0, 255, size=(40, 24, 32, 3), dtype=np.uint8)
    boxes = np.tile(np.array([[4, 2, 20, 18]], np.float32), (40, 1))
    boxes[2] = (10, 10, 30, 22)
    boxes[5] = np.nan  # lost on a sampled frame: the previous sampled frame's box (frame 2), not frame 4's
    crops, indices, used = tracked_box_crops(frames, boxes, size=8)
    assert indices == sample_frame_indices(40) and len(indices) == 16 and crops.shape == (16, 3, 8, 8)
    assert used[1] == used[2] == (10.0, 10.0, 30.0, 22.0) and used[0] == (4.0, 2.0, 20.0, 18.0)
    assert torch.equal(crops, crops_at_boxes(frames, indices, used, 8))
    # frame i uses row min(i, L - 1); every row lost: whole frames
    short, idx, rows = tracked_box_crops(frames[:5], np.array([[1, 1, 9, 9]]), size=8)
    assert idx == [0, 1, 2, 3, 4] and rows == [(1.0, 1.0, 9.0, 9.0)] * 5
    _, _, lost = tracked_box_crops(frames[:3], np.full((3, 4), np.nan), size=8)
    assert lost == [(0.0, 0.0, 32.0, 24.0)] * 3
    # a non-square box keeps its aspect: the short side fills the crop and the long side is centre-cropped
    wide = np.zeros((1, 24, 32, 3), np.uint8)
    wide[0, 8:16, 0:8] = 255  # left third of the box: cut away
    wide[0, 8:16, 8:16] = (0, 255, 0)  # middle third: kept
    crop, _, _ = tracked_box_crops(wide, np.array([[0, 8, 24, 16]]), size=8)
    assert crop[0, 0].max() < 1e-4 and crop[0, 1].min() > 1 - 1e-4
    with pytest.raises(ValueError, match="at least one box"):
        tracked_box_crops(frames, np.zeros((0, 4)), size=8)


def test_mask_box_crops_on_encoder_frames():
    frames = torch.zeros(4, 3, 16, 16)
    frames[:, 0, 4:8, 8:12] = 1.0  # red block at rows 4..7, cols 8..11 on every frame
    masks = torch.zeros(1, 2, 32, 32)
    masks[0, 0, 8:16, 16:24] = 1  # same place at mask resolution on mask frame 0
    crops, sources, boxes = mask_box_crops(frames, masks, 4)
    assert crops.shape == (4, 3, 16, 16) and sources == [0, 1, 2, 3]
    # sources 0, 1 map to mask frame 0 (m = round(s / 3)), 2, 3 to frame 1 (empty: the previous box is reused)
    assert boxes == [(0.5, 0.25, 0.75, 0.5)] * 4
    assert torch.equal(crops[0, 0], torch.ones(16, 16)) and torch.equal(crops[3, 0], torch.ones(16, 16))
    empty, sources, _ = mask_box_crops(frames, torch.zeros(1, 2, 32, 32), 2)
    assert sources == [0, 3] and torch.equal(empty, frames[[0, 3]])  # no positive pixel anywhere: whole frames
    ignored = torch.full((1, 2, 32, 32), -1.0)  # the ignore label is never the target
    assert torch.equal(mask_box_crops(frames, ignored, 2)[0], frames[[0, 3]])
    assert mask_box_crops(frames, masks)[0].shape[0] == 4  # n = min(16, num_src)


def test_ground_truth_mask_crops_are_mask_box_crops_of_the_preprocessed_clip():
    rng = np.random.default_rng(3)
    frames = rng.integers(0, 255, size=(20, 30, 40, 3), dtype=np.uint8)
    masks = np.zeros((20, 30, 40), bool)
    masks[6:, 5:17, 9:30] = True
    crops, source, boxes = ground_truth_mask_crops(frames, [masks], 16, num_frames=8, num_mask_frames=4)
    context = clip_preprocess(to_float_image(frames[source]), 16)
    mask_frames = np.linspace(0, 19, 4, dtype=int)
    again, picked, same = mask_box_crops(context, torch.from_numpy(masks[mask_frames][None]), 8)
    assert source == np.linspace(0, 19, 8, dtype=int).tolist() and picked == list(range(8))
    assert torch.equal(crops, again) and boxes == same
