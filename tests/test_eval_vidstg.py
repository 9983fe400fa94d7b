"""VidSTG metrics (sparrow.eval.vidstg): the MLLM-style mIoU and TubeDETR's m_tIoU / m_vIoU / vIoU@R."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import sparrow  # noqa: F401
from sparrow.eval.vidstg import (
    EMPTY_BOX,
    GroundingSample,
    TubeSample,
    box_iou,
    mask_to_box_inclusive,
    mllm_grounding_miou,
    remove_small_blobs,
    sample_frame_ids,
    tube_scores,
    tubedetr_metrics,
    video_miou,
)
from sparrow.storage import DataError


def test_remove_small_blobs_matches_skimage():
    from skimage.morphology import remove_small_objects

    rng = np.random.default_rng(0)
    for _ in range(20):
        mask = rng.random((40, 50)) < rng.uniform(0.05, 0.5)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # skimage >= 0.26 spells "remove objects smaller than 20" as max_size=19.
            expected = remove_small_objects(mask, max_size=19)
        assert np.array_equal(remove_small_blobs(mask, 20), expected)
    diagonal = np.eye(30, dtype=bool)  # 8-connected only: 30 one-pixel blobs under 4-connectivity
    assert not remove_small_blobs(diagonal).any()


def test_mask_to_box_matches_torchvision():
    import torch
    from torchvision.ops import masks_to_boxes

    rng = np.random.default_rng(1)
    for _ in range(10):
        mask = np.zeros((30, 40), bool)
        y, x = rng.integers(0, 25), rng.integers(0, 35)
        mask[y : y + rng.integers(1, 6), x : x + rng.integers(1, 6)] = True
        expected = masks_to_boxes(torch.from_numpy(mask)[None])[0].tolist()
        assert list(mask_to_box_inclusive(mask)) == expected
    assert mask_to_box_inclusive(np.zeros((5, 5), bool)) == EMPTY_BOX


def test_box_iou():
    assert box_iou([0, 0, 10, 10], [0, 0, 10, 10]) == 1.0
    assert box_iou([0, 0, 10, 10], [10, 0, 20, 10]) == 0.0
    assert box_iou([0, 0, 10, 10], [5, 0, 15, 10]) == pytest.approx(50 / 150)
    assert box_iou(EMPTY_BOX, [0, 0, 10, 10]) == 0.0
    assert box_iou([3, 3, 3, 3], [0, 0, 10, 10]) == 0.0  # one pixel: zero area (no +1)
    assert box_iou([3, 3, 3, 3], [3, 3, 3, 3]) == 0.0  # no area at all


def _mask(h, w, box):
    m = np.zeros((h, w), bool)
    x0, y0, x1, y1 = box
    m[y0 : y1 + 1, x0 : x1 + 1] = True
    return m


def test_video_miou_blobs_tube_and_empty_masks():
    gt = [[10, 10, 29, 29]] * 4
    exact = _mask(60, 60, (10, 10, 29, 29))
    noisy = exact.copy()
    noisy[50:53, 50:53] = True  # a 9-pixel blob, removed before the box
    masks = [exact, noisy, None, np.zeros((60, 60), bool)]
    assert video_miou(gt, masks) == pytest.approx(0.5)
    assert video_miou(gt, masks, tube=(0, 1)) == pytest.approx(1.0)
    with pytest.raises(DataError, match="3 predicted masks for 4"):
        video_miou(gt, masks[:3])


def test_mllm_miou_per_qtype_recall_and_missing():
    gt = [[10, 10, 29, 29]] * 2
    good = [_mask(60, 60, (10, 10, 29, 29))] * 2
    half = [_mask(60, 60, (10, 10, 29, 19))] * 2  # continuous boxes: IoU 19*9 / (19*19), just under 0.5
    iou_half = box_iou([10, 10, 29, 19], gt[0])
    samples = [
        GroundingSample("v1", "interrogative", gt, good),
        GroundingSample("v2", "interrogative", gt, half),
        GroundingSample("v3", "declarative", gt, good),
        GroundingSample("v4", "interrogative", gt, None),
    ]
    res = mllm_grounding_miou(samples)
    assert res.miou["interrogative"] == pytest.approx((1 + iou_half + 0) / 3)
    assert res.miou["declarative"] == 1.0
    assert res.recall["interrogative"][0.3] == pytest.approx(2 / 3)
    assert res.recall["interrogative"][0.5] == pytest.approx(1 / 3)  # strictly greater than 0.5
    assert res.missing == ["v4"] and res.counts["interrogative"] == 3
    dropped = mllm_grounding_miou(samples, missing="drop")
    assert dropped.miou["interrogative"] == pytest.approx((1 + iou_half) / 2) and dropped.dropped == ["v4"]


def test_sample_frame_ids():
    assert sample_frame_ids(0, 30, 30.0) == [0, 6, 12, 18, 24]
    assert sample_frame_ids(7, 20, 5.0) == list(range(7, 20))
    many = sample_frame_ids(0, 1000, 5.0, video_max_len=200)
    assert len(many) == 200 and many[:3] == [0, 5, 10]


def test_tubedetr_scores_by_hand():
    frames = list(range(0, 100, 10))
    gt_boxes = {f: [0, 0, 10, 10] for f in frames if 20 <= f < 60}
    pred_boxes = {f: [0, 0, 10, 10] if f < 50 else [0, 0, 10, 5] for f in frames}
    s = TubeSample("v", "declarative", frames, (20, 60), gt_boxes, (30, 80), pred_boxes)
    sc = tube_scores(s)
    assert sc["tiou"] == pytest.approx(30 / (40 + 50 - 30))
    # union frames 20..70 (6 sampled), intersection 30..50 (3): IoU 1, 1, 0.5 -> 2.5 / 6
    assert sc["viou"] == pytest.approx(2.5 / 6)
    assert sc["gt_viou"] == pytest.approx(3.5 / 4)
    res = tubedetr_metrics([s, TubeSample("w", "declarative", frames, (20, 60), gt_boxes, (70, 90), pred_boxes)])
    m = res.means["declarative"]
    assert m["m_tIoU"] == pytest.approx((0.5 + 0) / 2)
    assert m["vIoU@0.3"] == 0.5 and m["vIoU@0.5"] == 0.0
    with pytest.raises(DataError, match="no predicted box for frame 20"):
        tube_scores(TubeSample("x", "q", frames, (20, 60), gt_boxes, (20, 60), {}))
