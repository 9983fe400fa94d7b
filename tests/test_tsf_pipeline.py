"""run_tsf end to end on a toy curated set: fallbacks counted (never a crash), both crop variants, quality scoring."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fixtures.toydata import write_toy_curated
from sparrow.data.curated import CuratedDataset
from sparrow.tsf.cache import TSFStore
from sparrow.tsf.detection import DetectorConfig, TinyDetectorSpec, build_tiny_detector, build_vocabulary
from sparrow.tsf.encoder import PatchMeanEncoder, encoder_fingerprint
from sparrow.tsf.pipeline import TIMING_STAGES, TSFConfig, run_tsf
from sparrow.tsf.quality import (
    HARD_CASES,
    by_hard_case,
    evaluate_entries,
    evaluate_tracker,
    read_hard_case_tags,
    score_track,
)
from sparrow.tsf.tracking import AppearanceMotionTracker, Track


def _gt_config(**overrides) -> TSFConfig:
    return TSFConfig.for_profile("smoke", detector=DetectorConfig(box_source="ground_truth"), **overrides)


def _run(root, tmp_path, config, **kwargs):
    return run_tsf(
        root,
        "valid",
        config,
        kwargs.pop("encoder", PatchMeanEncoder(config.crop_size)),
        store=TSFStore(tmp_path / "entries"),
        out_dir=tmp_path / "run",
        **kwargs,
    )


def test_profiles_and_key_settings():
    paper = TSFConfig.for_profile("paper")
    assert (paper.crop_size, paper.k, paper.kmeans_iters, paper.num_frames, paper.select) == (336, 4, 8, 16, "medoid")
    assert (paper.detector.box_threshold, paper.detector.text_threshold) == (0.35, 0.25)
    assert paper.tracker.kind == "sam2" and not paper.store_crop_features
    assert TSFConfig.for_profile("mini").tracker.kind == "appearance"
    key = TSFConfig.for_profile("mini").key_dict()
    assert "device" not in key and "batch_size" not in key["detector"] and "sam2_config" not in key["tracker"]
    assert "detector" not in TSFConfig.for_profile("mini", crop_variant="gt_mask").key_dict()
    with pytest.raises(ValueError, match="unknown profile"):
        TSFConfig.for_profile("huge")
    with pytest.raises(ValueError, match="crop_variant"):
        TSFConfig(crop_variant="boxes")


def test_ground_truth_boxes_tracked_crops_and_report(tmp_path):
    root = write_toy_curated(tmp_path / "toy", videos=2, frames=6, ghost=True, short_video_frames=3)
    report = _run(root, tmp_path, _gt_config())
    counts = report.counts
    assert counts["expressions"] == 5 and counts["computed"] == 5 and counts["videos"] == 2
    assert counts["no_target"] == 1  # the ghost is never visible: whole-frame crops
    assert counts["short_video"] == 2  # both expressions of the 3-frame video: 3 < K crops
    assert set(report.timings) == set(TIMING_STAGES) and all(v >= 0 for v in report.timings.values())
    rows = {r["expression_id"]: r for r in report.rows}
    assert rows["valid00-ghost"]["fallbacks"] == ["no_target"] and rows["valid00-ghost"]["key_box"] is None
    assert rows["valid01-0"]["fallbacks"] == ["short_video"] and rows["valid01-0"]["num_crops"] == 3
    entries = {e.expression_id: e for e in report.entries(TSFStore(tmp_path / "entries"))}
    short = entries["valid01-0"]
    assert short.features.shape[0] == 3 and short.selected.tolist() == [0, 1, 2]
    ghost = entries["valid00-ghost"]
    assert ghost.crop_boxes.tolist() == [[0, 0, 64, 48]] * 6
    # a tracked toy object: the keyframe box is its ground truth and the track follows it
    dataset = CuratedDataset(root)
    tracked = entries["valid00-0"]
    truth = dataset.objects("toy/valid00")["0"].boxes
    assert tracked.key_box == tuple(truth[0]) and tracked.keyframe == 0 and tracked.key_source == "ground_truth"
    quality, _ = evaluate_entries([tracked], dataset)
    assert quality["all"].mean_iou > 0.8
    assert tracked.features.shape[0] == 4 and len(set(tracked.summary()["selected_frames"])) <= 4
    # the index and report files exist and match the returned report
    lines = report.index_path.read_text().splitlines()
    assert [json.loads(line) for line in lines] == report.rows
    assert json.loads((report.index_path.parent / "report.json").read_text())["counts"] == report.counts


def test_lost_frames_reuse_the_previous_box(tmp_path):
    class Flaky:
        """A tracker double that loses the target on odd frames."""

        name = "flaky"

        def track(self, frames, key_index, key_box, frame_paths=None, video_id=None):
            boxes = [None if t % 2 else (float(t), 0.0, float(t) + 10, 10.0) for t in range(frames.shape[0])]
            return Track(boxes, [0.0 if b is None else 1.0 for b in boxes])

    root = write_toy_curated(tmp_path / "toy", videos=1, frames=6)
    report = _run(root, tmp_path, _gt_config(), tracker=Flaky())
    assert report.counts["lost_track"] == 2 and report.counts["lost_crop_frames"] == 2 * 3
    entry = report.entries(TSFStore(tmp_path / "entries"))[0]
    assert entry.crop_boxes[:, 0].tolist() == [0, 0, 2, 2, 4, 4]
    assert np.isnan(entry.track_boxes[1]).all() and entry.fallbacks == ("lost_track",)


def test_no_detection_above_threshold_falls_back_to_whole_frames(tmp_path):
    root = write_toy_curated(tmp_path / "toy", videos=2, frames=5)
    texts = [e.text for e in CuratedDataset(root).iter_expressions()]
    folder = build_tiny_detector(tmp_path / "det", build_vocabulary(texts), TinyDetectorSpec(image_size=64))
    config = TSFConfig.for_profile("smoke", detector=DetectorConfig(checkpoint_dir=str(folder), box_threshold=1.0))
    report = _run(root, tmp_path, config)
    assert report.counts["no_detection"] == 4 and report.counts["computed"] == 4
    for entry in report.entries(TSFStore(tmp_path / "entries")):
        assert entry.fallbacks == ("no_detection",) and entry.key_box is None and entry.key_score is not None
        assert entry.crop_boxes.tolist() == [[0, 0, 64, 48]] * 5
    # an untrained detector still gives boxes when the threshold allows: then they are tracked
    loose = TSFConfig.for_profile("smoke", detector=DetectorConfig(checkpoint_dir=str(folder), box_threshold=0.0))
    report = run_tsf(
        root, "valid", loose, PatchMeanEncoder(32), store=TSFStore(tmp_path / "e2"), out_dir=tmp_path / "r2"
    )
    assert report.counts["no_detection"] == 0
    assert all(r["key_source"] == "detector" and r["key_box"] is not None for r in report.rows)


def test_ground_truth_mask_variant(tmp_path):
    root = write_toy_curated(tmp_path / "toy", videos=1, frames=6)
    # as many mask frames as context frames: context frame s uses mask frame s
    report = _run(root, tmp_path, _gt_config(crop_variant="gt_mask", num_mask_frames=16))
    dataset = CuratedDataset(root)
    for entry in report.entries(TSFStore(tmp_path / "entries")):
        assert entry.key_source == "gt_mask" and entry.keyframe is None
        expression = next(e for e in dataset.expressions(entry.video_id) if e.expression_id == entry.expression_id)
        truth = dataset.objects(entry.video_id)[expression.object_ids[0]].boxes
        assert entry.crop_boxes.tolist() == [truth[t] for t in entry.frame_indices]


def test_bad_components_are_refused_with_clear_errors(tmp_path):
    root = write_toy_curated(tmp_path / "toy", videos=1, frames=4)
    with pytest.raises(ValueError, match="expects 64-px crops"):
        _run(root, tmp_path, _gt_config(), encoder=PatchMeanEncoder(64))
    with pytest.raises(ValueError, match="returned"):
        _run(root, tmp_path, _gt_config(), encoder=lambda crops: torch.zeros(len(crops) + 1, 4))
    with pytest.raises(ValueError, match="checkpoint_dir is not set"):
        _run(root, tmp_path, TSFConfig.for_profile("smoke"))


def test_any_callable_is_an_encoder_and_its_fingerprint_tracks_weights():
    weights = torch.ones(3, 5)

    def encoder(crops):
        return crops.mean(dim=(2, 3)) @ weights

    first = encoder_fingerprint(encoder, 8)
    assert first.startswith("probe:") and first == encoder_fingerprint(encoder, 8)
    weights[0, 0] = 2.0
    assert encoder_fingerprint(encoder, 8) != first
    assert encoder_fingerprint(PatchMeanEncoder(16), 16) == "patch-mean:S16:D32:P8:seed0"


def test_track_scoring_and_hard_case_groups():
    truth = [(0, 0, 10, 10), (2, 0, 12, 10), None, (6, 0, 16, 10)]
    predicted = [(0, 0, 10, 10), None, None, (6, 0, 16, 10)]
    score = score_track("v", "0", predicted, truth, skip=[0])
    assert score.ious == [0.0, 1.0] and score.absent_lost == [True]
    assert score.mean_iou == 0.5 and score.success == 0.5
    other = score_track("w", "1", [(0, 0, 10, 10)] * 2, [(0, 0, 10, 10), (0, 0, 20, 10)])
    groups = by_hard_case([score, other], {"v": ("crossing", "motion_needed"), "w": ()})
    assert set(groups) == {"all", "crossing", "none_of_these"}
    assert groups["crossing"].tracks == 1 and groups["crossing"].mean_iou == 0.5
    assert groups["all"].mean_iou == pytest.approx((0.5 + 0.75) / 2)
    assert groups["all"].absent_reported_lost == 1.0
    assert set(HARD_CASES) == {"crossing", "occlusion", "exit_reenter", "motion_distractor"}


def test_hard_case_tags_are_read_from_the_generator_manifest(tmp_path):
    generated = tmp_path / "generated"
    generated.mkdir()
    manifest = {
        "videos": {
            "toy": [
                {"key": "valid/valid00", "tags": ["crossing", "occlusion"]},
                {"key": "valid/valid01", "tags": []},
                {"key": "train/train00", "tags": ["exit_reenter"]},
            ]
        }
    }
    (generated / "manifest.json").write_text(json.dumps(manifest))
    root = write_toy_curated(tmp_path / "toy", videos=2, frames=4, meta={"generated_root": str(generated)})
    tags = read_hard_case_tags(root)
    assert tags["toy/valid00"] == ("crossing", "occlusion") and tags["toy/valid01"] == ()
    assert tags["toy/train00"] == ("exit_reenter",) and "toy/train01" not in tags
    quality, scores = evaluate_tracker(AppearanceMotionTracker(), CuratedDataset(root), "valid", tags)
    assert len(scores) == 4 and quality["crossing"].tracks == 2 and quality["all"].mean_iou > 0.8
    assert read_hard_case_tags(write_toy_curated(tmp_path / "plain", videos=1, frames=3)) == {}
