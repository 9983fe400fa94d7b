"""What notebook 02 records and the steps behind it: TSF passes keyed by ``TSFPass``, the trackers compared, the
bar-chart reshaping, the detector's training log, and the key naming scheme of
``sparrow.tsf.quality.recorded_numbers`` (the expectation files are keyed by it), on hand-built inputs."""

from __future__ import annotations

import json

import pytest

from fixtures.toydata import write_toy_curated
from sparrow.results import Recorder
from sparrow.storage import atomic_write_json
from sparrow.tsf import quality
from sparrow.tsf.pipeline import FALLBACKS, ensure_tsf, profile_config
from sparrow.tsf.quality import (
    DetectionQuality,
    DetectorTraining,
    QualityConfig,
    TrackingQuality,
    evaluate_trackers,
    final_loss,
    mean_iou_by_case,
    read_detector_training,
    recorded_numbers,
)
from sparrow.tsf.runs import Throughput, TSFPass, TSFRun, ensure_runs, run_counts
from sparrow.tsf.tracking import TrackerConfig
from sparrow.viz import loss_curves

COUNTS = {
    "expressions": 5,
    "videos": 2,
    "skipped_kind": 1,
    "lost_crop_frames": 3,
    "no_detection": 1,
    "no_target": 0,
    "lost_track": 2,
    "short_video": 0,
    "computed": 5,
}


def _run(tmp_path, name: str, **counts) -> TSFRun:
    """A finished run as the pipeline leaves it, reduced to its report's counts."""
    folder = tmp_path / name
    atomic_write_json(folder / "report.json", {"counts": {**COUNTS, **counts}})
    (folder / "index.jsonl").write_text("")
    return TSFRun(folder)


def _quality(tracks: int, iou: float) -> TrackingQuality:
    return TrackingQuality(
        tracks=tracks, mean_iou=iou, success_rate=iou / 2, visible_frames=10, absent_frames=0, absent_reported_lost=None
    )


def test_a_pass_is_named_split_source_box():
    assert TSFPass("train").name == "train/all/detector"
    assert str(TSFPass("valid", "ref-davis17", "ground_truth")) == "valid/ref-davis17/ground_truth"
    with pytest.raises(ValueError, match="keyframe box"):
        TSFPass("valid", None, "oracle")


def test_run_counts_by_pass_name(tmp_path):
    runs = {TSFPass("train"): _run(tmp_path, "a"), TSFPass("valid", "x", "ground_truth"): _run(tmp_path, "b", videos=7)}
    assert run_counts(runs) == {"train/all/detector": COUNTS, "valid/x/ground_truth": {**COUNTS, "videos": 7}}
    assert run_counts(runs, ("videos", "no_detection")) == {
        "train/all/detector": {"videos": 2, "no_detection": 1},
        "valid/x/ground_truth": {"videos": 7, "no_detection": 1},
    }


def test_ensure_runs_computes_each_pass_once_in_order(tmp_path):
    root = write_toy_curated(tmp_path / "toy", videos=1, frames=5)
    runs = ensure_runs(
        "smoke", 0, [["valid", "toy", "ground_truth"], TSFPass("train", None, "ground_truth")], curated_root=root
    )
    assert [str(k) for k in runs] == ["valid/toy/ground_truth", "train/all/ground_truth"]
    config = profile_config("smoke", root, box_source="ground_truth")
    assert runs[TSFPass("valid", "toy", "ground_truth")].path == ensure_tsf(
        "smoke", 0, "valid", "toy", config=config, curated_root=root
    )
    assert runs[TSFPass("train", None, "ground_truth")].counts["expressions"] > 0


def test_detector_training_log_and_final_loss(tmp_path):
    assert final_loss([4.0, 1.0, 2.0, 3.0], window=2) == 2.5
    assert final_loss([4.0, 2.0], window=50) == 3.0
    assert final_loss([]) is None
    losses = [float(v) for v in range(100)]
    log = {"samples": 7, "config": {"steps": 100}, "losses": losses, "wall_s": 1.5}
    (tmp_path / "training.json").write_text(json.dumps(log))
    training = read_detector_training(tmp_path)
    assert training == DetectorTraining(samples=7, steps=100, losses=losses, wall_s=1.5)
    assert training.final_loss == sum(range(50, 100)) / 50
    with pytest.raises(FileNotFoundError, match="training log"):
        read_detector_training(tmp_path / "released")


def test_evaluate_trackers_compares_the_trackers_and_the_davis_passes(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(quality, "hard_case_sample", lambda dataset, split, tags, per_case: [("v", f"{per_case}")])
    monkeypatch.setattr(quality, "build_tracker", lambda config: config.kind)
    monkeypatch.setattr(
        quality,
        "evaluate_tracker",
        lambda tracker, dataset, split, tags, objects=None: (
            calls.append((tracker, split, objects)) or {"all": _quality(1, 0.5)},
            [],
        ),
    )
    monkeypatch.setattr(quality, "evaluate_entries", lambda entries, dataset, tags: ({"all": _quality(2, 0.25)}, []))
    runs = {
        TSFPass("train"): _run(tmp_path, "t"),
        TSFPass("valid", "ref-davis17"): _run(tmp_path, "d"),
        TSFPass("valid", "mevis"): _run(tmp_path, "m"),
        TSFPass("valid", "ref-davis17", "ground_truth"): _run(tmp_path, "g"),
    }
    results = evaluate_trackers(TrackerConfig(), None, QualityConfig(sam2_per_case=3), {}, runs)
    assert list(results) == [
        "appearance",
        "appearance (sample)",
        "sam2 tiny (sample)",
        "pipeline, detector keyframe",
        "pipeline, ground_truth keyframe",
    ]
    assert calls == [
        ("appearance", "valid", None),
        ("appearance", "valid", [("v", "3")]),
        ("sam2", "valid", [("v", "3")]),
    ]
    assert results["pipeline, detector keyframe"]["all"].tracks == 2


def test_mean_iou_by_case_groups_trackers_per_case_in_report_order():
    tracking = {
        "appearance": {"all": _quality(3, 0.12345), "occlusion": _quality(1, 0.5), "crossing": _quality(1, 0.25)},
        "sam2": {"all": _quality(2, 0.3), "crossing": _quality(1, 0.1)},
    }
    assert mean_iou_by_case(tracking) == {
        "all": {"appearance": 0.123, "sam2": 0.3},
        "crossing": {"appearance": 0.25, "sam2": 0.1},
        "occlusion": {"appearance": 0.5},
    }


def _recorded(tmp_path) -> list[dict]:
    training = DetectorTraining(samples=9, steps=3, losses=[3.0, 2.0, 1.0])
    detection = DetectionQuality(expressions=4, with_target=3, mean_iou=0.2, acc50=0.25, ap50=0.1, no_detection=1)
    runs = {TSFPass("train"): _run(tmp_path, "t"), TSFPass("valid", "ref-davis17"): _run(tmp_path, "d", videos=1)}
    tracking = {
        "appearance": {"all": _quality(3, 0.5), "crossing": _quality(1, 0.25)},
        "pipeline, detector keyframe": {"all": _quality(2, 0.1)},
    }
    speed = Throughput({"load": 1.0, "detect": 3.0}, computed_expressions=4, computed_videos=2, runs=1)
    return recorded_numbers(training, detection, "valid", runs, tracking, speed)


def test_names_follow_the_results_scheme_in_recording_order(tmp_path):
    names = [n["name"] for n in _recorded(tmp_path)]
    tsf = [
        f"tsf/{run}/{count}"
        for run in ("train/all/detector", "valid/ref-davis17/detector")
        for count in ("expressions", "videos", "skipped_kind", "lost_crop_frames", *FALLBACKS)
    ]
    tracking = [
        f"tracking/{tracker}/{case}/{what}"
        for tracker, case in (("appearance", "all"), ("appearance", "crossing"), ("pipeline, detector keyframe", "all"))
        for what in ("tracks", "mean_iou", "success_rate")
    ]
    assert names == [
        "detector/train_steps",
        "detector/train_samples",
        "detector/final_loss",
        *[f"detection/valid/{k}" for k in ("expressions", "with_target", "mean_iou", "acc50", "ap50", "no_detection")],
        *tsf,
        *tracking,
        "throughput/computed_expressions",
        "throughput/load_ms_per_expression",
        "throughput/detect_ms_per_expression",
        "throughput/seconds_per_video",
    ]


def test_values_and_units(tmp_path):
    numbers = {n["name"]: n for n in _recorded(tmp_path)}
    assert numbers["detector/final_loss"] == {"name": "detector/final_loss", "value": 2.0, "unit": "loss"}
    assert numbers["detector/train_steps"]["unit"] == "steps"
    assert numbers["detection/valid/mean_iou"]["unit"] == "IoU" and numbers["detection/valid/ap50"]["unit"] == ""
    assert numbers["tsf/valid/ref-davis17/detector/videos"] == {
        "name": "tsf/valid/ref-davis17/detector/videos",
        "value": 1,
        "unit": "count",
    }
    assert numbers["tracking/appearance/crossing/success_rate"] == {
        "name": "tracking/appearance/crossing/success_rate",
        "value": 0.125,
        "unit": "fraction",
    }
    assert numbers["tracking/pipeline, detector keyframe/all/mean_iou"]["unit"] == "IoU"
    assert numbers["throughput/detect_ms_per_expression"] == {
        "name": "throughput/detect_ms_per_expression",
        "value": 750.0,
        "unit": "ms",
        "note": "wall clock, machine-dependent",
    }
    rec = Recorder("02_tsf_computation", profile="smoke", seed=0)
    for number in numbers.values():
        rec.add(**number)


def test_throughput_summary():
    assert Throughput({"load": 1.0, "detect": 3.0}, 4, 2, 1).summary() == (
        "4 expressions in 2 videos, 4.0 s of stages, 2.000 s per video"
    )
    cached = Throughput({"load": 0.0}, 0, 0, 0)
    assert cached.summary() == "0 expressions in 0 videos, 0.0 s of stages (all from the cache)"


def test_loss_curves_are_raw_under_smoke():
    losses = [float(v) for v in range(40)]
    assert len(loss_curves({"a": losses}, smooth=25).axes[0].lines) == 2
    assert len(loss_curves({"a": losses}, smooth=25, profile="smoke").axes[0].lines) == 1
    assert len(loss_curves({"a": losses}, smooth=25, profile="mini").axes[0].lines) == 2
