"""Finished TSF runs read back: ensure_tsf's caching, the per-frame box format the model takes, track files,
throughput, and the stage figures of notebook 02."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fixtures.toydata import LosesOneFrame, write_toy_curated
from sparrow.data.curated import CuratedDataset
from sparrow.tsf.cache import TSFStore
from sparrow.tsf.detection import DetectorConfig
from sparrow.tsf.encoder import PatchMeanEncoder
from sparrow.tsf.pipeline import TIMING_STAGES, TSFConfig, ensure_tsf, run_tsf
from sparrow.tsf.runs import TSFRun, throughput, tracked_boxes
from sparrow.tsf.tracking import Track


def _gt_config(**overrides) -> TSFConfig:
    return TSFConfig.for_profile("smoke", detector=DetectorConfig(box_source="ground_truth"), **overrides)


def test_boxes_cover_the_video_in_pixels_and_fill_lost_frames_for_the_model(tmp_path):
    root = write_toy_curated(tmp_path / "toy", videos=2, frames=6, ghost=True)
    dataset = CuratedDataset(root)
    report = run_tsf(
        root,
        "valid",
        _gt_config(),
        PatchMeanEncoder(32),
        tracker=LosesOneFrame(dataset, 2),
        store=TSFStore(tmp_path / "entries"),
        out_dir=tmp_path / "run",
    )
    run = TSFRun(tmp_path / "run")
    assert len(run) == report.counts["expressions"] == 5 and run.keys() == sorted(run.keys())
    assert run.counts == report.counts and set(run.timings) == set(TIMING_STAGES)

    raw = run.boxes("toy/valid00", "valid00-0", fill_lost=False)
    truth = dataset.objects("toy/valid00")["0"].boxes
    assert raw.shape == (6, 4) and raw.dtype == np.float32
    assert np.isnan(raw[2]).all()
    assert [raw[t].tolist() for t in (0, 1, 3, 4, 5)] == [truth[t] for t in (0, 1, 3, 4, 5)]
    filled = run.boxes("toy/valid00", "valid00-0")
    assert filled[2].tolist() == truth[1] and not np.isnan(filled).any()  # the previous frame's box
    ghost = run.boxes("toy/valid00", "valid00-ghost")  # no target: whole frames
    assert ghost.tolist() == [[0, 0, 64, 48]] * 6
    assert np.isnan(run.boxes("toy/valid00", "valid00-ghost", fill_lost=False)).all()
    assert set(run.all_boxes()) == set(run.keys())

    # the crop code takes either: filled rows as they are, NaN rows filled per sampled frame
    from sparrow.tsf.crops import tracked_box_crops

    frames = torch.from_numpy(dataset.load_frames("toy/valid00")).permute(0, 3, 1, 2).float() / 255
    assert tracked_box_crops(frames, filled, 16, 4)[0].shape == (4, 3, 16, 16)
    assert tracked_box_crops(frames, raw, 16)[2][2] == tuple(truth[1])

    with pytest.raises(KeyError, match="no TSF for expression"):
        run.boxes("toy/valid00", "nope")
    with pytest.raises(FileNotFoundError, match="not a finished TSF run"):
        TSFRun(tmp_path / "elsewhere")


def test_clip_spans_place_the_track_at_its_frames(tmp_path):
    root = write_toy_curated(tmp_path / "toy", videos=1, frames=6)
    report = run_tsf(
        root, "valid", _gt_config(), PatchMeanEncoder(32), store=TSFStore(tmp_path / "e"), out_dir=tmp_path / "run"
    )
    entry = report.entries(TSFStore(tmp_path / "e"))[0]
    entry.clip_start, entry.track_boxes = 2, entry.track_boxes[2:5]  # as if the expression held on frames 2-4
    boxes = tracked_boxes(entry, fill_lost=False)
    assert boxes.shape == (6, 4) and np.isnan(boxes[[0, 1, 5]]).all() and not np.isnan(boxes[2:5]).any()
    filled = tracked_boxes(entry)
    assert filled[0].tolist() == [0, 0, 64, 48] and filled[5].tolist() == boxes[4].tolist()
    entry.key_source = "gt_mask"
    with pytest.raises(ValueError, match="no tracked boxes"):
        tracked_boxes(entry)


def test_ensure_tsf_is_cached_repairs_damage_and_filters_sources(tmp_path):
    root = write_toy_curated(tmp_path / "toy", videos=2, frames=5)
    config = _gt_config()
    first = ensure_tsf("smoke", 0, "valid", "toy", config=config, curated_root=root)
    report_bytes = (first / "report.json").read_bytes()
    assert TSFRun(first).counts["computed"] == 4 and first.name.startswith("valid-toy-")
    again = ensure_tsf("smoke", 0, "valid", "toy", config=config, curated_root=root)
    assert again == first and (first / "report.json").read_bytes() == report_bytes  # not re-run
    # a damaged entry makes it run again, recompute that entry only, and give the same boxes
    run = TSFRun(first)
    before = run.all_boxes()
    path = run.store.path(run.rows[0]["key"])
    path.write_bytes(path.read_bytes()[:50])
    assert run.problems() and "unreadable" in run.problems()[0]
    ensure_tsf("smoke", 0, "valid", "toy", config=config, curated_root=root)
    repaired = TSFRun(first)
    assert repaired.counts["corrupt_recomputed"] == 1 and repaired.counts["cache_hits"] == 3
    assert not repaired.problems()
    assert all(np.array_equal(before[k], v) for k, v in repaired.all_boxes().items())
    # another split/source is another run; an unknown source is refused by name
    other = ensure_tsf("smoke", 0, "train", None, config=config, curated_root=root)
    assert other != first and other.name.startswith("train-")
    with pytest.raises(ValueError, match="no source 'mevis'"):
        ensure_tsf("smoke", 0, "valid", "mevis", config=config, curated_root=root)
    with pytest.raises(ValueError, match="under 'paper'"):
        ensure_tsf("paper", 0, "valid", curated_root=root)


def test_track_files_round_trip_through_the_explorer_reader(tmp_path):
    from sparrow.viz.tracks import TrackFolder

    root = write_toy_curated(tmp_path / "toy", videos=1, frames=6)
    dataset = CuratedDataset(root)
    run_tsf(
        root,
        "valid",
        _gt_config(),
        PatchMeanEncoder(32),
        tracker=LosesOneFrame(dataset, 2),
        store=TSFStore(tmp_path / "e"),
        out_dir=tmp_path / "run",
    )
    run = TSFRun(tmp_path / "run")
    assert run.export_tracks(tmp_path / "tracks") == len(run)
    folder = TrackFolder(tmp_path / "tracks")
    entry = run.entry("toy/valid00", "valid00-1")
    track = folder.load("toy/valid00", "valid00-1", 6, 64, 48)
    raw = run.boxes("toy/valid00", "valid00-1", fill_lost=False)
    assert track.boxes[2] is None
    assert np.allclose([track.boxes[t] for t in (0, 1, 3)], raw[[0, 1, 3]], atol=0.01)
    assert list(track.crop_frames) == sorted({entry.frame_indices[i] for i in entry.selected.tolist()})


def test_throughput_counts_only_runs_that_computed(tmp_path):
    root = write_toy_curated(tmp_path / "toy", videos=2, frames=5)
    store = TSFStore(tmp_path / "e")
    run_tsf(root, "valid", _gt_config(), PatchMeanEncoder(32), store=store, out_dir=tmp_path / "a")
    run_tsf(root, "valid", _gt_config(), PatchMeanEncoder(32), store=store, out_dir=tmp_path / "b")  # all hits
    measured = throughput([TSFRun(tmp_path / "a"), TSFRun(tmp_path / "b")])
    assert (measured.runs, measured.computed_expressions, measured.computed_videos) == (1, 4, 2)
    assert measured.total_s == pytest.approx(sum(TSFRun(tmp_path / "a").timings.values()))
    assert measured.per_video_s == pytest.approx(measured.total_s / 2)
    assert set(measured.per_expression_ms()) == set(TIMING_STAGES)
    nothing = throughput([TSFRun(tmp_path / "b")])
    assert nothing.per_video_s is None and nothing.per_expression_ms()["track"] is None


def test_stage_figures_of_an_entry(tmp_path):
    from sparrow.tsf.quality import example_rows, read_hard_case_tags
    from sparrow.viz.tracks import crop_strip_figure, entry_crops, pca_2d, tsf_stage_figures

    root = write_toy_curated(tmp_path / "toy", videos=2, frames=6, ghost=True)
    dataset = CuratedDataset(root)
    run_tsf(root, "valid", _gt_config(), PatchMeanEncoder(32), store=TSFStore(tmp_path / "e"), out_dir=tmp_path / "r")
    run = TSFRun(tmp_path / "r")
    entry = run.entry("toy/valid00", "valid00-0")
    figures = tsf_stage_figures(dataset, entry)
    assert list(figures) == ["keyframe", "track", "crops", "clusters"]
    crops = entry_crops(dataset.load_frames("toy/valid00"), entry, 24)
    assert crops.shape == (6, 24, 24, 3) and crops.dtype == np.uint8
    # the crop at the first frame shows the target's colour (the toy's first object fills its box)
    colour = np.asarray(
        dataset.load_frames("toy/valid00")[0][int(entry.crop_boxes[0][1]) + 6, int(entry.crop_boxes[0][0]) + 6]
    )
    assert np.abs(crops[0][12, 12].astype(int) - colour.astype(int)).max() < 40
    assert len(crop_strip_figure(dataset.load_frames("toy/valid00"), entry).axes) == 6
    ghost = run.entry("toy/valid00", "valid00-ghost")  # no keyframe: no keyframe panel
    assert "keyframe" not in tsf_stage_figures(dataset, ghost)
    assert pca_2d(np.ones((1, 5))).shape == (1, 2) and np.allclose(pca_2d(np.eye(3))[:, :2].std(axis=0) > 0, True)
    picked = example_rows(run.rows, read_hard_case_tags(root))
    assert picked == {"fallback: no_target": run.row("toy/valid00", "valid00-ghost")}
