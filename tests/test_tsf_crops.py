"""Target crops: frame sampling, the released clamp/fallback rules, and the ground-truth-mask variant."""

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
    normalised_mask_box,
    pixel_box,
    sample_frame_indices,
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
    image[0, :, :10] = 1.0   # left quarter red: cut away by the centre crop
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
    second[:, 0:8, 0:8] = True               # second referent always visible (top-left)
    first[2:, 8:16, 8:16] = True             # first referent from frame 2 on (bottom-right)
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
