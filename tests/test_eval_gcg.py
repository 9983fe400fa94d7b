"""Video GCG metrics (docs/evaluation.md §8.2-8.3): tube IoU, GLaMM's greedy pairings, failure handling, METEOR/CIDEr."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from sparrow.eval import gcg
from sparrow.eval.gcg import (
    GcgSample,
    clean_caption,
    evaluate_gcg,
    greedy_miou,
    greedy_true_positives,
    phrases,
    tube_iou,
)
from sparrow.storage import DataError


def _tube(t: int, boxes: list[tuple[int, int, int, int] | None], h: int = 16, w: int = 16) -> np.ndarray:
    tube = np.zeros((t, h, w), np.uint8)
    for i, b in enumerate(boxes):
        if b is not None:
            y0, x0, y1, x1 = b
            tube[i, y0:y1, x0:x1] = 1
    return tube


def test_phrases_and_cleaned_caption():
    text = "A <p> red square </p> [SEG] passes a <p>blue circle</p> [SEG]."
    assert phrases(text) == ["red square", "blue circle"]
    assert clean_caption(text) == "A red square passes a blue circle ."
    assert clean_caption("<p> x </p> [BOX] [SEG]", tokens=("[BOX]", "[SEG]")) == "x"


def test_tube_iou_sums_over_time_and_guards_the_empty_union():
    a = _tube(2, [(0, 0, 4, 4), None])
    b = _tube(2, [(0, 0, 4, 2), (0, 0, 2, 2)])
    # intersection 8 pixels (frame 0), union 16 + 4 = 20 pixels over the two frames
    assert tube_iou(a, b) == pytest.approx(8 / 20, abs=1e-15)
    assert tube_iou(np.zeros((3, 4, 4)), np.zeros((3, 4, 4))) == 1.0
    with pytest.raises(DataError, match="shapes differ"):
        tube_iou(np.zeros((2, 4, 4)), np.zeros((3, 4, 4)))


def test_greedy_miou_takes_global_maxima_and_ignores_the_unpaired():
    ious = np.array([[0.9, 0.8], [0.85, 0.1], [0.3, 0.2]])  # 3 predictions x 2 ground-truth tubes
    # 0.9 at (0, 0); then rows {1, 2} x column {1}: max 0.2 at (2, 1)
    assert greedy_miou(ious) == pytest.approx((0.9 + 0.2) / 2, abs=1e-15)
    assert greedy_miou(np.zeros((2, 2))) == 0.0
    assert greedy_miou(np.zeros((0, 3))) == 0.0


def test_recall_matching_stops_at_the_first_pair_below_a_threshold():
    ious = np.array([[0.9, 0.6], [0.7, 0.55]])  # ground truth x prediction
    good = np.ones((2, 2))
    assert greedy_true_positives(ious, good) == 2
    sims = np.array([[0.4, 0.9], [0.9, 0.9]])  # the best-IoU pair has a dissimilar phrase: stop, count nothing
    assert greedy_true_positives(ious, sims) == 0
    assert greedy_true_positives(np.array([[0.9, 0.0], [0.0, 0.45]]), good) == 1


def test_evaluate_gcg_failures_follow_sparrow():
    gt_caption = "<p> red square </p> [SEG] and <p> blue circle </p> [SEG]"
    square, circle = _tube(3, [(0, 0, 4, 4)] * 3), _tube(3, [(8, 8, 12, 12)] * 3)
    ok = GcgSample(
        "v/ok",
        gt_caption,
        [square, circle],
        "<p> red square </p> [SEG] near <p> blue circle </p> [SEG]",
        [square, circle],
    )
    missing = GcgSample("v/missing", gt_caption, [square, circle], None)
    mismatched = GcgSample("v/bad", gt_caption, [square, circle], "<p> red square </p> [SEG]", [square, circle])
    encoder = gcg.WordBagEncoder()
    result = evaluate_gcg([ok, missing, mismatched], text_encoder=encoder, caption_metrics=False)
    assert result.per_video_miou == {"v/ok": 1.0, "v/missing": 0.0, "v/bad": 0.0}
    assert result.miou == pytest.approx(1 / 3, abs=1e-15)
    assert result.missing == ["v/missing"]
    assert "1 predicted phrases for 2 mask tubes" in result.failed["v/bad"]
    # the missing video's phrases are not counted, the mismatched one's are: 2 TP / (2 + 2) GT phrases
    assert result.recall == pytest.approx(0.5, abs=1e-15)
    assert result.clair is None and result.notes["clair"].startswith("not computed")
    assert result.meteor is None and result.notes["meteor"] == "not computed: caption metrics off"


def test_word_bag_similarity_is_the_share_of_common_words_in_one_space():
    encoder = gcg.WordBagEncoder()
    sims = gcg.similarity_matrix(encoder, ["a Red circle", "two red red stars"], ["the red circle", "a blue square"])
    # "a red circle" / "the red circle": 2 of 3 words; "two red red stars" counts "red" twice: 2 / sqrt(6 * 3)
    expected = [[2 / 3, 1 / 3], [2 / (6 * 3) ** 0.5, 0.0]]
    assert np.allclose(sims, expected, atol=1e-15)
    # the columns of the first call are kept: the same phrases in the other order give the transpose
    assert np.allclose(
        gcg.similarity_matrix(encoder, ["the red circle", "a blue square"], ["a Red circle", "two red red stars"]),
        np.array(expected).T,
        atol=1e-15,
    )


def test_evaluate_gcg_without_encoder_and_bad_ground_truth():
    square = _tube(2, [(0, 0, 4, 4)] * 2)
    sample = GcgSample("v", "<p> a </p> [SEG]", [square], "<p> a </p> [SEG]", [square])
    result = evaluate_gcg([sample], caption_metrics=False)
    assert result.recall is None and result.notes["recall"] == gcg.NO_ENCODER
    with pytest.raises(DataError, match="video w: 1 ground-truth phrases for 2 mask tubes"):
        evaluate_gcg([GcgSample("w", "<p> a </p> [SEG]", [square, square], None)], caption_metrics=False)
    with pytest.raises(DataError, match="no videos"):
        evaluate_gcg([], caption_metrics=False)


def test_caption_metrics_report_missing_java(monkeypatch):
    monkeypatch.setattr(gcg.shutil, "which", lambda name: None)
    scores, notes = gcg.caption_scores(["a red square"], ["a square"])
    assert scores == {"METEOR": None, "CIDEr": None}
    assert notes["METEOR"] == gcg.JAVA_MISSING
    with pytest.raises(ValueError, match="2 references for 1 candidates"):
        gcg.caption_scores(["a", "b"], ["a"])


@pytest.mark.skipif(
    shutil.which("java") is None, reason="METEOR and the PTB tokenizer need Java (default-jre-headless)"
)
def test_caption_metrics_equal_pycocoevalcap():
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    refs = ["a red square moves to the left", "the blue circle appears later", "two squares cross in the middle"]
    cands = ["a red square moving left", "a circle", "two squares cross in the middle"]
    scores, notes = gcg.caption_scores(refs, cands)
    assert notes == {}
    tok = PTBTokenizer()
    gts = tok.tokenize({str(i): [{"caption": r}] for i, r in enumerate(refs)})
    res = tok.tokenize({str(i): [{"caption": c}] for i, c in enumerate(cands)})
    meteor = Meteor()
    try:
        official_meteor = meteor.compute_score(gts, res)[0]
    finally:
        meteor.__del__()
    assert scores["METEOR"] == pytest.approx(official_meteor, abs=1e-12)
    assert scores["CIDEr"] == pytest.approx(Cider().compute_score(gts, res)[0], abs=1e-12)
    identical, _ = gcg.caption_scores(refs, refs)
    assert identical["METEOR"] == pytest.approx(1.0, abs=1e-9)
    assert identical["CIDEr"] == pytest.approx(10.0, abs=1e-9)  # CIDEr-D x 10 of a perfect corpus
    # the cached jar gives the same corpus score on a second call (it keeps no state between calls)
    assert gcg.caption_scores(refs, cands)[0] == scores
