"""The detector box: offline tokenizer, tiny GroundingDINO round trip through from_pretrained, training, quality."""

from __future__ import annotations

import numpy as np
import pytest

from fixtures.toydata import write_toy_curated
from sparrow.tsf.detection import (
    SPECIAL_IDS,
    DetectorConfig,
    DetectorTrainingConfig,
    GroundingDetector,
    TinyDetectorSpec,
    build_tiny_detector,
    build_vocabulary,
    choose_keyframe,
    query_text,
    train_detector,
)
from sparrow.tsf.quality import average_precision, evaluate_detection


def test_query_is_one_lowercase_phrase_ending_in_a_dot():
    assert query_text("The red square. Moving left?") == "the red square moving left ."
    assert query_text("   ") == "."


def test_vocabulary_keeps_grounding_dino_special_ids_and_is_contiguous():
    vocab = build_vocabulary(["The red square", "which circle moves left?"])
    for token, index in SPECIAL_IDS.items():
        assert vocab[token] == index
    assert sorted(vocab.values()) == list(range(len(vocab))) and len(vocab) >= 1030
    assert {"red", "square", "which", "circle", "moves", "left"} <= set(vocab)


def test_tiny_detector_round_trip_and_tokenizer_ids(tmp_path):
    vocab = build_vocabulary(["the red square", "the blue circle"])
    folder = build_tiny_detector(tmp_path / "det", vocab, TinyDetectorSpec(image_size=64), seed=3)
    detector = GroundingDetector(folder)
    ids = detector.processor.tokenizer(query_text("The red square"))["input_ids"]
    assert ids[0] == 101 and ids[-2:] == [1012, 102]
    assert detector.processor.tokenizer.convert_ids_to_tokens(ids[1:-2]) == ["the", "red", "square"]
    frames = np.random.default_rng(0).integers(0, 255, size=(2, 48, 64, 3), dtype=np.uint8)
    found = detector.detect(list(frames), ["the red square", "the blue circle"])
    for detections in found:
        assert len(detections.scores) == 20  # every query box, best first
        assert np.all(np.diff(detections.scores) <= 0)
        assert detections.boxes.shape == (20, 4)
        assert detections.boxes[:, [0, 2]].max() <= 64 + 1e-3 and detections.boxes[:, [1, 3]].max() <= 48 + 1e-3
    # the same folder reloads to the same weights
    again = GroundingDetector(folder).detect([frames[0]], ["the red square"])[0]
    assert np.allclose(again.scores, found[0].scores) and again is not found[0]
    assert GroundingDetector(folder).fingerprint == detector.fingerprint


def test_missing_checkpoint_names_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no GroundingDINO checkpoint"):
        GroundingDetector(tmp_path / "nowhere")


def test_training_lowers_the_loss_and_is_cached(tmp_path):
    root = write_toy_curated(tmp_path / "toy", videos=3, frames=6)
    training = DetectorTrainingConfig(steps=30, batch_size=4, spec=TinyDetectorSpec(image_size=64))
    folder = train_detector(root, training, tmp_path / "runs")
    import json

    log = json.loads((folder / "training.json").read_text())
    losses = log["losses"]
    from sparrow.data.curated import CuratedDataset

    visible = sum(b is not None for o in CuratedDataset(root).iter_objects() if "train" in o.video_id for b in o.boxes)
    assert len(losses) == 30 and log["samples"] == visible  # one sample per (expression, frame with its box)
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
    mtime = (folder / "model.safetensors").stat().st_mtime_ns
    assert train_detector(root, training, tmp_path / "runs") == folder  # cached: not retrained
    assert (folder / "model.safetensors").stat().st_mtime_ns == mtime
    detector = GroundingDetector(folder)
    quality = evaluate_detection(detector, CuratedDataset(root), "valid", DetectorConfig.for_profile("smoke"))
    assert quality.expressions == 6 and quality.with_target == 6
    assert 0.0 <= quality.mean_iou <= 1.0 and 0.0 <= quality.ap50 <= 1.0
    frames = CuratedDataset(root).load_frames("toy/valid00")
    frame, _ = choose_keyframe(
        detector, frames, "the red square", DetectorConfig(keyframe="best", keyframe_candidates=3)
    )
    assert frame in (0, 2, 5)


def test_average_precision_by_hand():
    truth = {"a": [(0, 0, 10, 10)], "b": [(0, 0, 10, 10)]}
    perfect = [("a", 0.9, (0, 0, 10, 10)), ("b", 0.8, (0, 0, 10, 10))]
    assert average_precision(perfect, truth) == pytest.approx(1.0)
    # one false positive ranked first: precision 0.5 at recall 0.5, 2/3 at recall 1
    mixed = [("a", 0.95, (50, 50, 60, 60)), ("a", 0.9, (0, 0, 10, 10)), ("b", 0.8, (0, 0, 10, 10))]
    assert average_precision(mixed, truth) == pytest.approx(2 / 3)
    # a duplicate detection of an already matched box is a false positive
    duplicate = [("a", 0.9, (0, 0, 10, 10)), ("a", 0.85, (0, 0, 10, 10))]
    expected = (51 * 1.0 + 50 * 0.0) / 101  # recall reaches 0.5 only
    assert average_precision(duplicate, truth) == pytest.approx(expected)
    assert average_precision([], truth) == 0.0
