"""The text-dependence diagnostic: ground truth as prediction matches the ground truth; one blob for all is 1."""

from __future__ import annotations

import numpy as np
import pytest

from sparrow.data.curate import ensure_curated
from sparrow.data.curated import CuratedDataset
from sparrow.data.records import submission_names
from sparrow.eval.export import write_expression_masks
from sparrow.eval.text_dependence import TextMask, text_dependence, text_dependence_of


@pytest.fixture(scope="module")
def mevis():
    ds = CuratedDataset(ensure_curated("smoke", 0))
    split = next(
        s
        for s in ("valid_u", "valid", "train")
        if any(
            len({tuple(e.object_ids) for e in ds.expressions(v.video_id)}) > 1
            for v in ds.iter_videos()
            if v.source == "mevis" and v.split == s
        )
    )
    return ds, split


def _write(ds, split, folder, masks_of):
    for exp in ds.iter_expressions(source="mevis", split=split):
        video = ds.video(exp.video_id)
        name, exp_name = submission_names(exp.video_id, exp.expression_id)
        write_expression_masks(folder, name, exp_name, video.frame_names, masks_of(exp, video))


def test_ground_truth_as_prediction_gives_the_ground_truth_pair_iou(mevis, tmp_path):
    ds, split = mevis
    _write(ds, split, tmp_path, lambda exp, video: ds.expression_masks(exp))
    r = text_dependence(ds, tmp_path, "mevis", split)
    assert r.pairs > 0
    assert r.predicted_pair_iou == pytest.approx(r.ground_truth_pair_iou, abs=1e-12)
    assert r.ground_truth_pair_iou < 0.95 and r.ignores_text is False


def test_one_blob_for_every_text_is_flagged(mevis, tmp_path):
    ds, split = mevis

    def blob(exp, video):
        m = np.zeros((video.num_frames, video.height, video.width), bool)
        m[:, : video.height // 2, : video.width // 2] = True
        return m

    _write(ds, split, tmp_path, blob)
    r = text_dependence(ds, tmp_path, "mevis", split)
    assert r.predicted_pair_iou == 1.0 and r.ignores_text is True


def test_no_predictions_give_no_value(mevis, tmp_path):
    ds, split = mevis
    r = text_dependence(ds, tmp_path, "mevis", split)
    assert r.pairs == 0 and r.predicted_pair_iou is None and r.ignores_text is None


def test_ground_truth_as_prediction_hits_every_referent_case(mevis, tmp_path):
    ds, split = mevis
    _write(ds, split, tmp_path, lambda exp, video: ds.expression_masks(exp))
    r = text_dependence(ds, tmp_path, "mevis", split)
    assert r.referent_cases > 0 and r.referent_cases % 2 == 0
    assert r.referent_accuracy == 1.0


def test_one_blob_for_every_text_scores_at_most_chance(mevis, tmp_path):
    ds, split = mevis
    _write(ds, split, tmp_path, lambda exp, video: np.ones((video.num_frames, video.height, video.width), bool))
    r = text_dependence(ds, tmp_path, "mevis", split)
    assert r.referent_cases > 0 and r.referent_accuracy <= 0.5


def _cell(index: int) -> np.ndarray:
    m = np.zeros((2, 4, 4), bool)
    m[:, index, index] = True
    return m


def test_referent_cases_are_disjoint_non_empty_pairs_and_ties_miss():
    a, b, c = _cell(0), _cell(1), _cell(2)
    swapped = [TextMask(("1",), b, a), TextMask(("2",), a, b)]  # each text draws the other's referent
    assert text_dependence_of([swapped]).referent_accuracy == 0.0
    tie = [TextMask(("1",), a | b, a), TextMask(("2",), c, b)]  # first: IoU 0.5 with both; second: 0 with both
    r = text_dependence_of([tie])
    assert (r.pairs, r.referent_cases, r.referent_accuracy) == (1, 2, 0.0)
    overlapping = [TextMask(("1",), a, a), TextMask(("1", "2"), a | b, a | b)]  # shared object: a pair, no case
    r = text_dependence_of([overlapping])
    assert (r.pairs, r.referent_cases, r.referent_accuracy) == (1, 0, None)
    empty = [TextMask(("1",), a, a), TextMask(("2",), b, np.zeros_like(b))]  # referent absent from every frame
    assert text_dependence_of([empty]).referent_cases == 0
    right = [TextMask(("1",), a, a), TextMask(("2",), b | c, b)]
    assert text_dependence_of([right]).referent_accuracy == 1.0
