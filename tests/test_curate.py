"""Curation: bad input (each error names its file; ``skip_bad`` records it), atomic output, de-duplication,
Q&A templates, the command line, streaming memory, and SPARROW-Mini end to end."""

from __future__ import annotations

import json
import os
import re
import shutil
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from fixtures import sources as fx
from sparrow.data.curate import curate, main_curate
from sparrow.data.curated import CuratedDataset
from sparrow.data.qa_templates import ANSWER_TEMPLATES, QUESTION_TEMPLATES, seg_targets
from sparrow.storage import DataError

ALL = {
    "mevis": fx.make_mevis,
    "ref-youtube-vos": fx.make_ytvos,
    "ref-davis17": fx.make_davis_converted,
    "revos": fx.make_revos,
    "tracking": fx.make_tracking,
    "vidstg": fx.make_vidstg,
    "hcstvg": fx.make_hcstvg,
    "videogcg": fx.make_videogcg,
}


def build(tmp_path: Path, *names: str) -> dict[str, Path]:
    return {name: ALL[name](tmp_path / "src" / name) for name in names}


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# -- bad input ---------------------------------------------------------------------------------------------------

MEVIS_TRAIN = Path("src/mevis/train")
TRACK_GOT = Path("src/tracking/VOT_dataset/GOT-10k/train/GOT-10k_Train_000001/00")


def _corrupt_jpeg(tmp):
    (tmp / MEVIS_TRAIN / "JPEGImages/a1b2c3d4e5f6/00002.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg at all")


def _truncated_jpeg(tmp):
    path = tmp / MEVIS_TRAIN / "JPEGImages/a1b2c3d4e5f6/00002.jpg"
    path.write_bytes(path.read_bytes()[:300])


def _missing_frame(tmp):
    (tmp / MEVIS_TRAIN / "JPEGImages/a1b2c3d4e5f6/00003.jpg").unlink()


def _rle_wrong_size(tmp):
    path = tmp / MEVIS_TRAIN / "mask_dict.json"
    masks = json.loads(path.read_text())
    masks["51"][1] = fx.rle(np.ones((10, 10), bool))
    path.write_text(json.dumps(masks))


def _unknown_object(tmp):
    path = tmp / "src/ref-youtube-vos/meta_expressions/train/meta_expressions.json"
    meta = json.loads(path.read_text())
    meta["videos"]["0f1e2d3c4b"]["expressions"]["1"]["obj_id"] = "7"
    path.write_text(json.dumps(meta))


def _empty_expression(tmp):
    path = tmp / MEVIS_TRAIN / "meta_expressions.json"
    meta = json.loads(path.read_text())
    meta["videos"]["a1b2c3d4e5f6"]["expressions"]["1"]["exp"] = "   "
    path.write_text(json.dumps(meta))


def _non_utf8(tmp):
    (tmp / TRACK_GOT / "nlp.txt").write_bytes("a red box near the café".encode("latin-1"))


def _truncated_json(tmp):
    path = tmp / MEVIS_TRAIN / "mask_dict.json"
    path.write_text(path.read_text()[:-40])


def _box_outside(tmp):
    path = tmp / TRACK_GOT / "groundtruth.txt"
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    lines[2] = "60,4,12,10"  # x0 = 60 in a 48-pixel-wide frame
    path.write_text("\n".join(lines) + "\n")


def _corrupt_rle_counts(tmp):
    path = tmp / MEVIS_TRAIN / "mask_dict.json"
    masks = json.loads(path.read_text())
    masks["60"][0]["counts"] = masks["60"][0]["counts"][:-2]
    path.write_text(json.dumps(masks))


def _missing_mask_dict(tmp):
    (tmp / MEVIS_TRAIN / "mask_dict.json").unlink()


def _duplicate_key(tmp):
    path = tmp / MEVIS_TRAIN / "meta_expressions.json"
    lost = '"2": {"exp": "an expression json would drop", "obj_id": [0], "anno_id": [51]}, '
    path.write_text(path.read_text().replace('"expressions": {', '"expressions": {' + lost, 1))


# (source, corruption, file named in the error, problem, item recorded with skip_bad, what must survive)
BAD_CASES = {
    "corrupt_jpeg": ("mevis", _corrupt_jpeg, "00002.jpg", "corrupt frame", "mevis/a1b2c3d4e5f6", "mevis/0f0f0f0f0f0f"),
    "truncated_jpeg": (
        "mevis",
        _truncated_jpeg,
        "00002.jpg",
        "corrupt frame (Truncated",
        "mevis/a1b2c3d4e5f6",
        "mevis/0f0f0f0f0f0f",
    ),
    "missing_frame": (
        "mevis",
        _missing_frame,
        "00003.jpg",
        "missing frame",
        "mevis/a1b2c3d4e5f6",
        "mevis/0f0f0f0f0f0f",
    ),
    "rle_wrong_size": (
        "mevis",
        _rle_wrong_size,
        "mask_dict.json",
        "RLE of size 10x10 for a 32x48 frame",
        "mevis/a1b2c3d4e5f6/object 0",
        "mevis/a1b2c3d4e5f6",
    ),
    "rle_corrupt_counts": (
        "mevis",
        _corrupt_rle_counts,
        "mask_dict.json",
        "RLE counts cover",
        "mevis/0f0f0f0f0f0f/object 0",
        "mevis/a1b2c3d4e5f6",
    ),
    "unknown_object_id": (
        "ref-youtube-vos",
        _unknown_object,
        "meta_expressions.json",
        "unknown object id '7'",
        "ref-youtube-vos/0f1e2d3c4b/1",
        "ref-youtube-vos/0f1e2d3c4b",
    ),
    "empty_expression": (
        "mevis",
        _empty_expression,
        "meta_expressions.json",
        "empty expression",
        "mevis/a1b2c3d4e5f6/1",
        "mevis/a1b2c3d4e5f6",
    ),
    "non_utf8_text": (
        "tracking",
        _non_utf8,
        "nlp.txt",
        "not valid utf-8",
        "tracking/GOT-10k/train/GOT-10k_Train_000001/00",
        "tracking/A2D-Sentences/Images/clip01",
    ),
    "truncated_json": ("mevis", _truncated_json, "mask_dict.json", "invalid JSON", "mevis/train", "mevis/cccccccccccc"),
    "missing_mask_dict_of_a_training_split": (
        "mevis",
        _missing_mask_dict,
        "mask_dict.json",
        "missing: the train split is released with masks",
        "mevis/train",
        "mevis/cccccccccccc",
    ),
    "duplicate_json_key": (
        "mevis",
        _duplicate_key,
        "meta_expressions.json",
        "duplicate key '2'",
        "mevis/train",
        "mevis/cccccccccccc",
    ),
    "box_outside_frame": (
        "tracking",
        _box_outside,
        "groundtruth.txt",
        "outside the 48x32 frame",
        "tracking/GOT-10k/train/GOT-10k_Train_000001/00/object 1",
        "tracking/GOT-10k/train/GOT-10k_Train_000001/00",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input_names_the_file_or_is_skipped_and_reported(tmp_path, case):
    source, corrupt, file_name, problem, item, survivor = BAD_CASES[case]
    sources = build(tmp_path, source)
    corrupt(tmp_path)
    out = tmp_path / "out"
    with pytest.raises(DataError) as info:
        curate(sources, out)
    message = str(info.value)
    assert file_name in message and problem in message, message
    assert re.search(r"/[^ ]+" + re.escape(file_name), message), f"no path in: {message}"
    assert not out.exists()

    report = curate(sources, out, skip_bad=True)
    written = json.loads((out / "report.json").read_text())
    entries = [s for s in written["skipped"] if s["item"] == item]
    assert entries, written["skipped"]
    assert file_name in (entries[0]["file"] or "") and problem in entries[0]["reason"]
    assert written["totals"]["skipped"] == len(written["skipped"]) == len(report.skipped)
    video_ids = {v["video_id"] for v in jsonl(out / "videos.jsonl")}
    expression_ids = {e["expression_id"] for e in jsonl(out / "expressions.jsonl")}
    assert survivor in video_ids or survivor in expression_ids
    assert item not in video_ids and item not in expression_ids
    CuratedDataset(out).load_frames(sorted(video_ids)[0])  # what survived is readable


def test_a_failed_run_keeps_the_previous_dataset_and_leaves_no_temporary_folder(tmp_path):
    sources = build(tmp_path, "mevis")
    out = tmp_path / "out"
    curate(sources, out)
    before = (out / "videos.jsonl").read_bytes()
    _missing_frame(tmp_path)
    with pytest.raises(DataError):
        curate(sources, out)
    assert (out / "videos.jsonl").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "src"]


def test_refuses_to_replace_a_folder_that_is_not_a_curated_dataset(tmp_path):
    sources = build(tmp_path, "mevis")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("mine")
    with pytest.raises(DataError, match="not a curated dataset"):
        curate(sources, tmp_path / "notes")
    assert (tmp_path / "notes" / "keep.txt").read_text() == "mine"


# -- the curated output --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def curated_all(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("all")
    sources = build(tmp, *ALL)
    report = curate(sources, tmp / "out", seed=3)
    return tmp, sources, report


def test_every_source_curates_cleanly_into_the_records_contract(curated_all):
    tmp, sources, report = curated_all
    ds = CuratedDataset(tmp / "out")
    assert ds.sources() == sorted(ALL)
    assert report.skipped == []
    written = json.loads((tmp / "out" / "report.json").read_text())
    for name in ALL:
        totals = written["sources"][name]["totals"]
        assert totals["videos"] >= 1 and totals["expressions"] >= 1 and totals["qa"] >= 1, name
    meta = ds.meta
    assert set(meta["sources"]) == set(ALL) and meta["seed"] == 3
    assert meta["sources"]["mevis"]["ground_truth"] == {"train": True, "valid": False}
    for video in ds.iter_videos():
        assert video.video_id.startswith(f"{video.source}/")
        frames = ds.load_frames(video.video_id, [0, video.num_frames - 1])
        assert frames.shape == (2, video.height, video.width, 3)
        assert not any(os.path.isabs(p) for p in video.frame_paths)
        for obj in ds.objects(video.video_id).values():
            for box in obj.boxes:
                assert box is None or (0 <= box[0] < box[2] <= video.width and 0 <= box[1] < box[3] <= video.height)
    # mp4 sources were extracted inside the curated folder
    vidstg = ds.video("vidstg/1234567890_2_9")
    assert vidstg.frame_paths[0].startswith("frames/vidstg/")


def test_multi_object_referent_is_the_union(curated_all):
    tmp, _, _ = curated_all
    ds = CuratedDataset(tmp / "out")
    (exp,) = [e for e in ds.expressions("mevis/a1b2c3d4e5f6") if e.object_ids == ["0", "1"]]
    union = ds.expression_masks(exp)
    masks = fx.mevis_masks()
    from sparrow.data.rle import decode_rle

    for t in range(4):
        expected = decode_rle(masks["51"][t], (32, 48)) | decode_rle(masks["52"][t], (32, 48))
        np.testing.assert_array_equal(union[t], expected)


def test_qa_pairs_follow_the_sparrow_templates(curated_all):
    tmp, _, _ = curated_all
    ds = CuratedDataset(tmp / "out")
    expressions = {e.expression_id: e for e in ds.iter_expressions()}
    qa = list(ds.iter_qa())
    assert len(qa) == sum(1 for e in expressions.values() if e.object_ids)
    questions = {t.split("{phrase}")[0] for t in QUESTION_TEMPLATES}
    answers = {a.replace("[SEG]", "[BOX] [SEG]") for a in ANSWER_TEMPLATES}
    for pair in qa:
        assert pair.question.startswith("<video>\n") and "[SEG]" not in pair.question
        assert re.search(r"(?<!\[BOX\] )\[SEG\]", pair.answer) is None  # every [SEG] carries its [BOX]
        assert pair.answer.count("[SEG]") == len(pair.object_ids) == len(seg_targets(pair))
        exp = expressions[pair.qa_id.removesuffix("/qa")]
        assert {i for group in seg_targets(pair) for i in group} <= set(exp.object_ids)
        if exp.kind in ("referring", "declarative") and "[" not in exp.text:
            assert pair.answer in answers
            assert any(pair.question[len("<video>\n") :].startswith(q) for q in questions)
    mevis = next(q for q in qa if q.qa_id == "mevis/a1b2c3d4e5f6/0/qa")
    assert mevis.object_ids == ["0+1"] and "two boxes moving" in mevis.question  # plain, lower-cased phrase
    gcg = next(q for q in qa if q.qa_id == "videogcg/vidstg_gcg/2401075277/0/qa")
    assert gcg.answer == "there is a <p> white rabbit </p> [BOX] [SEG] next to an <p> adult </p> [BOX] [SEG]"
    assert gcg.object_ids == ["0+1", "1"] and seg_targets(gcg) == [["0", "1"], ["1"]]


def test_duplicates_removed_in_train_kept_in_held_out_splits(tmp_path):
    sources = build(tmp_path, "mevis", "ref-davis17")
    for split in ("train", "valid"):
        path = tmp_path / "src/ref-davis17/meta_expressions" / split / "meta_expressions.json"
        meta = json.loads(path.read_text())
        (vid,) = meta["videos"]
        meta["videos"][vid]["expressions"]["1"]["exp"] = "Object 1  by slot 0."
        meta["videos"][vid]["expressions"]["3"]["exp"] = "object 1 by slot 0."
        path.write_text(json.dumps(meta))
    report = curate(sources, tmp_path / "out")
    dups = {(d["item"], d["removed"]) for d in report.duplicates}
    assert ("mevis/a1b2c3d4e5f6/2", True) in dups  # "The  box on the RIGHT" == "the box on the right"
    assert ("ref-davis17/bear/3", True) in dups and ("ref-davis17/toy-boat/3", False) in dups
    ids = {e["expression_id"] for e in jsonl(tmp_path / "out" / "expressions.jsonl")}
    assert "ref-davis17/bear/3" not in ids and "ref-davis17/toy-boat/3" in ids
    totals = report.to_json()["sources"]["ref-davis17"]["totals"]
    assert totals["duplicates_removed"] == 1 and totals["duplicates_kept"] == 1


def test_same_seed_same_bytes_and_the_seed_drives_templates(tmp_path):
    sources = build(tmp_path, "ref-davis17", "tracking")
    curate(sources, tmp_path / "a", seed=0)
    curate(sources, tmp_path / "b", seed=0)
    curate(sources, tmp_path / "c", seed=1)
    for name in ("videos.jsonl", "objects.jsonl", "expressions.jsonl", "qa.jsonl", "meta.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert (tmp_path / "a" / "qa.jsonl").read_bytes() != (tmp_path / "c" / "qa.jsonl").read_bytes()


def test_splits_filter_and_relative_paths_survive_a_move(tmp_path):
    sources = build(tmp_path / "data", "mevis", "hcstvg")
    report = curate(sources, tmp_path / "data" / "out", splits=["train"])
    assert {v["split"] for v in jsonl(tmp_path / "data" / "out" / "videos.jsonl")} == {"train"}
    assert report.totals["videos"] == 3
    shutil.move(str(tmp_path / "data"), str(tmp_path / "moved"))
    ds = CuratedDataset(tmp_path / "moved" / "out")
    for video in ds.iter_videos():
        assert ds.load_frames(video.video_id, [0]).shape[0] == 1


# -- command line ------------------------------------------------------------------------------------------------


def test_cli_curates_reports_and_fails_cleanly(tmp_path, capsys):
    sources = build(tmp_path, "mevis", "tracking")
    _non_utf8(tmp_path)
    argv = [
        "--source",
        f"mevis={sources['mevis']}",
        "--source",
        f"tracking={sources['tracking']}",
        "--out",
        str(tmp_path / "out"),
    ]
    assert main_curate(argv) == 1
    assert "nlp.txt: not valid utf-8" in capsys.readouterr().err
    assert main_curate([*argv, "--skip-bad", "--splits", "train", "val"]) == 0
    printed = capsys.readouterr().out
    assert "mevis" in printed and "1 items skipped" in printed
    assert main_curate(["--source", f"nope={tmp_path}", "--out", str(tmp_path / "x")]) == 1
    assert "unknown source 'nope'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main_curate(["--source", "mevis", "--out", str(tmp_path / "x")])


def test_sparrow_cli_dispatches_curate(tmp_path):
    from sparrow.cli import main

    sources = build(tmp_path, "revos")
    assert main(["curate", "--source", f"revos={sources['revos']}", "--out", str(tmp_path / "out")]) == 0
    assert CuratedDataset(tmp_path / "out").sources() == ["revos"]


# -- streaming ---------------------------------------------------------------------------------------------------


def _tracking_root(root: Path, n_videos: int) -> Path:
    base = root / "VOT_dataset" / "GOT-10k" / "train"
    masks = [fx.rect(4, 14, 4 + t, 16 + t) for t in range(8)]
    lines = [f"{4 + t},4,12,10" for t in range(8)]
    for i in range(n_videos):
        fx.make_tracking_sample(base / f"GOT-10k_Train_{i:06d}" / "00", lines, f"box number {i}", {"1": masks})
    return root


def test_memory_does_not_grow_with_the_number_of_videos(tmp_path):
    peaks = {}
    for n in (10, 40):
        root = _tracking_root(tmp_path / f"trk{n}", n)
        curate({"tracking": root}, tmp_path / f"warm{n}", workers=1)  # warm imports and caches
        tracemalloc.start()
        report = curate({"tracking": root}, tmp_path / f"out{n}", workers=1)
        peaks[n] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert report.totals["videos"] == n
    # 4x the videos: a loader that held every video would need about 4x the memory.
    assert peaks[40] < 1.5 * peaks[10], peaks


# -- SPARROW-Mini --------------------------------------------------------------------------------------------------


def _synthetic():
    synthetic = pytest.importorskip("sparrow.data.synthetic")
    if not hasattr(synthetic, "generate"):
        pytest.skip("sparrow.data.synthetic.generate is not written yet")
    return synthetic


def test_sparrow_mini_smoke_loads_and_curates_cleanly(tmp_path):
    from sparrow.data.curate import _manifest_sources

    synthetic = _synthetic()
    root = Path(synthetic.generate("smoke", 0, tmp_path / "gen"))
    sources = _manifest_sources(root)
    assert len(sources) >= 7, sources
    report = curate(sources, tmp_path / "out")
    assert report.skipped == [], report.skipped[:5]
    ds = CuratedDataset(tmp_path / "out")
    assert set(ds.sources()) == set(sources)
    totals = report.to_json()["sources"]
    for name in sources:
        assert totals[name]["totals"]["videos"] > 0 and totals[name]["totals"]["expressions"] > 0, name
    for video in ds.iter_videos():
        for exp in ds.expressions(video.video_id)[:1]:
            masks = ds.expression_masks(exp)
            assert masks.shape == (video.num_frames, video.height, video.width)
    # the markup SPARROW-Mini writes in the tracking and GCG layouts becomes grounded captions with phrase spans,
    # one referring expression per phrase, and multi-id phrases in GCG
    captions = [e for e in ds.iter_expressions() if e.kind == "caption"]
    assert {e.video_id.split("/")[0] for e in captions} == {"tracking", "videogcg"}
    assert all(e.phrases for e in captions)
    assert any(len(ids) > 1 for e in captions for _, ids in e.phrase_list())
    ids = {e.expression_id for e in ds.iter_expressions()}
    assert all(f"{e.expression_id}/p{k}" in ids for e in captions for k in range(len(e.phrases)))


def test_ensure_curated_builds_once_and_caches(tmp_path):
    synthetic = _synthetic()
    if not hasattr(synthetic, "ensure_generated"):
        pytest.skip("sparrow.data.synthetic.ensure_generated is not written yet")
    from sparrow.data.curate import ensure_curated

    out = ensure_curated("smoke", 0)
    stamp = (out / "report.json").stat().st_mtime_ns
    assert ensure_curated("smoke", 0) == out
    assert (out / "report.json").stat().st_mtime_ns == stamp
    assert CuratedDataset(out).meta["profile"] == "smoke"
    meta = json.loads((out / "meta.json").read_text())
    (out / "meta.json").write_text(json.dumps({**meta, "format_version": 1}))  # written by an older kit
    assert ensure_curated("smoke", 0) == out
    assert json.loads((out / "meta.json").read_text())["format_version"] == meta["format_version"]


def test_box_before_seg_rule_and_markup_helpers():
    from sparrow.data.qa_templates import enforce_box_before_seg, markup_to_tokens, parse_markup, plain_phrase

    assert enforce_box_before_seg("It is [SEG].") == "It is [BOX] [SEG]."
    assert enforce_box_before_seg("It is [BOX] [SEG].") == "It is [BOX] [SEG]."  # idempotent
    assert enforce_box_before_seg("[BOX][SEG]") == "[BOX][BOX] [SEG]"  # SPARROW's rule needs one whitespace
    assert parse_markup("[a red car](1) passes [two trucks](2, 3)") == [
        ("a red car", ["1"]),
        ("two trucks", ["2", "3"]),
    ]
    assert markup_to_tokens("[a dog](1) runs") == "<p> a dog </p> [BOX] [SEG] runs"
    assert plain_phrase("[The Dog](1) on the left.") == "the dog on the left"


# -- silent wrong data ---------------------------------------------------------------------------------------------


def test_nan_box_lines_are_counted_in_the_report(tmp_path):
    sources = build(tmp_path, "tracking")  # the GOT-10k sequence has one NaN line
    report = curate(sources, tmp_path / "out")
    written = json.loads((tmp_path / "out" / "report.json").read_text())
    assert written["sources"]["tracking"]["splits"]["train"]["boxes_nan"] == 1
    assert written["totals"]["boxes_nan"] == report.totals["boxes_nan"] == 1


def test_symlink_loops_and_links_into_the_release_are_never_followed_twice(tmp_path):
    sources = build(tmp_path, "tracking")
    vot = sources["tracking"] / "VOT_dataset"
    (vot / "GOT-10k" / "train" / "loop").symlink_to("..")  # a link to a parent folder
    bucket = vot / "VID-Sentence" / "VID" / "train" / "ILSVRC2015_VID_train_0000"
    bucket.mkdir(parents=True)
    # GOT-10k's sample again, under VID-Sentence's x1,y1,x2,y2 box convention
    (bucket / "linked").symlink_to(vot / "GOT-10k" / "train" / "GOT-10k_Train_000001")
    outside = tmp_path / "elsewhere"
    shutil.copytree(vot / "A2D_sentences" / "Images" / "clip01", outside / "clip01")
    (vot / "A2D_sentences" / "Images" / "ext1").symlink_to(outside)  # outside the release: read once
    (vot / "A2D_sentences" / "Images" / "ext2").symlink_to(outside)
    out = tmp_path / "out"
    with pytest.raises(DataError, match=r"GOT-10k/train/loop: symbolic link to .*, a folder above it"):
        curate(sources, out)
    report = curate(sources, out, skip_bad=True)
    videos = {v["video_id"] for v in jsonl(out / "videos.jsonl")}
    assert videos == {
        "tracking/GOT-10k/train/GOT-10k_Train_000001/00",
        "tracking/A2D-Sentences/Images/clip01",
        "tracking/A2D-Sentences/Images/ext1/clip01",
        "tracking/HC-STVG/Val_Images/person01",
    }
    reasons = {s["item"]: s["reason"] for s in report.skipped}
    assert set(reasons) == {
        "tracking/GOT-10k/train/loop",
        "tracking/VID-Sentence/VID/train/ILSVRC2015_VID_train_0000/linked",
        "tracking/A2D-Sentences/Images/ext2",
    }
    assert (
        "inside the release being read" in reasons["tracking/VID-Sentence/VID/train/ILSVRC2015_VID_train_0000/linked"]
    )
    assert "again (already read as Images/ext1)" in reasons["tracking/A2D-Sentences/Images/ext2"]
    assert report.totals["videos"] == 4 and report.totals["skipped"] == 3


def test_splits_a_source_does_not_have_are_an_error(tmp_path, capsys):
    sources = build(tmp_path, "mevis", "hcstvg")
    out = tmp_path / "out"
    with pytest.raises(DataError, match=r"source mevis has no split test \(its splits: train, valid_u, valid\)"):
        curate(sources, out, splits=["test"])
    assert main_curate(["--source", f"hcstvg={sources['hcstvg']}", "--out", str(out), "--splits", "val"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "hcstvg release has no split val (it holds train)" in err
    assert str(sources["hcstvg"]) in err and not out.exists()


def _dead_pid() -> int:
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_killed_runs_temporary_folders_are_removed_but_not_a_live_runs(tmp_path):
    import fcntl

    from sparrow.data.curate import LOCK_NAME

    sources = build(tmp_path, "revos")
    out = tmp_path / "out"
    dead = _dead_pid()
    killed = tmp_path / f".out.tmp-{dead}"
    (killed / "frames" / "vidstg").mkdir(parents=True)
    (killed / "frames" / "vidstg" / "000000.jpg").write_bytes(b"extracted")
    (killed / LOCK_NAME).write_text("")  # its lock died with it
    old = tmp_path / f".out.old-{dead}"
    old.mkdir()
    live = tmp_path / f".out.tmp-{dead + 1}"  # another run, alive: it holds its lock
    live.mkdir()
    handle = open(live / LOCK_NAME, "w")
    fcntl.flock(handle, fcntl.LOCK_EX)
    swapping = tmp_path / f".out.old-{os.getppid()}"  # no lock, but its process is alive
    swapping.mkdir()
    others = [tmp_path / ".other.tmp-1", tmp_path / "out.tmp-1"]
    for folder in others:
        folder.mkdir()
    (tmp_path / f".out.tmp-{dead + 2}").symlink_to(tmp_path / "src")
    try:
        report = curate(sources, out)
    finally:
        handle.close()
    assert not killed.exists() and not old.exists()
    assert sorted(report.removed_temporaries) == sorted([killed.name, old.name])
    assert live.is_dir() and swapping.is_dir() and all(f.is_dir() for f in others)
    assert (tmp_path / f".out.tmp-{dead + 2}").is_symlink()
    assert json.loads((out / "report.json").read_text())["removed_temporaries"] == report.removed_temporaries
    assert not (out / LOCK_NAME).exists()


def test_corrupt_mp4_is_one_line_naming_the_file_or_a_listed_skip(tmp_path, capsys):
    sources = build(tmp_path, "hcstvg", "revos")
    mp4 = sources["hcstvg"] / "Video" / "sub1" / "77_ExAmPlE0001.mp4"
    mp4.write_bytes(mp4.read_bytes()[: len(mp4.read_bytes()) // 2])  # truncated
    argv = ["--source", f"hcstvg={sources['hcstvg']}", "--source", f"revos={sources['revos']}"]
    assert main_curate([*argv, "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.search(r"/77_ExAmPlE0001\.mp4: cannot decode video, corrupt or truncated", err)
    assert main_curate([*argv, "--out", str(tmp_path / "out"), "--skip-bad"]) == 0
    written = json.loads((tmp_path / "out" / "report.json").read_text())
    (skip,) = written["skipped"]
    assert skip["item"] == "hcstvg/77_ExAmPlE0001.mp4" and skip["file"].endswith("77_ExAmPlE0001.mp4")
    assert written["sources"]["revos"]["totals"]["videos"] > 0
    assert not any((tmp_path / "out").rglob("*.jpg"))  # nothing of the skipped video was kept


def test_corrupt_mp4_with_too_few_frames_names_the_file(tmp_path):
    sources = build(tmp_path, "vidstg")
    fx.write_mp4(sources["vidstg"] / "video" / "0000" / "1234567890.mp4", 6, (32, 48))  # the annotation needs 10
    with pytest.raises(DataError, match=r"1234567890\.mp4: decoded 6 frames, annotation 0 .* needs 10 \(truncated"):
        curate(sources, tmp_path / "out")
    report = curate(sources, tmp_path / "out", skip_bad=True)
    assert [s["item"] for s in report.skipped] == ["vidstg/1234567890_2_9"]


# -- official layouts ----------------------------------------------------------------------------------------------


def _assert_grounded_captions(ds: CuratedDataset, expected: dict) -> set[str]:
    """Each expected caption (plain text, phrases and their ids) and its referring expression per phrase; returns
    the expression ids checked."""
    by_id = {e.expression_id: e for e in ds.iter_expressions()}
    checked = set()
    for caption_id, (text, phrases) in expected.items():
        caption = by_id[caption_id]
        assert (caption.kind, caption.text, caption.phrase_list()) == ("caption", text, phrases)
        assert caption.object_ids == list(dict.fromkeys(i for _, ids in phrases for i in ids))
        referring = [by_id[f"{caption_id}/p{k}"] for k in range(len(phrases))]
        assert [(r.kind, r.text, r.object_ids) for r in referring] == [("referring", p, ids) for p, ids in phrases]
        checked |= {caption_id, *(r.expression_id for r in referring)}
    return checked


def test_official_sparrow_tracking_layout_links_every_phrase_to_its_objects(tmp_path):
    from fixtures import official_layouts as ol

    out = tmp_path / "out"
    curate({"tracking": ol.make_sparrow_tracking(tmp_path / "video_dataset")}, out)
    ds = CuratedDataset(out)
    checked = _assert_grounded_captions(ds, ol.EXPECTED_TRACKING)
    plain = {e.expression_id: (e.kind, e.text, e.object_ids) for e in ds.iter_expressions()}
    for exp_id, text in ol.EXPECTED_TRACKING_PLAIN.items():
        assert plain[exp_id] == ("referring", text, ["1"])
    assert set(plain) == checked | set(ol.EXPECTED_TRACKING_PLAIN)
    vid = "tracking/VID-Sentence/VID/train/ILSVRC2015_VID_train_0000/ILSVRC2015_train_00005003"
    caption = next(e for e in ds.expressions(vid) if e.kind == "caption")
    children = ds.phrase_masks(caption)[1]  # [two children](2, 3): the union of both
    np.testing.assert_array_equal(children[0], fx.rect(20, 30, 2, 8) | fx.rect(20, 30, 40, 46))
    qa = {q.qa_id: q for q in ds.iter_qa()}[f"{vid}/0/qa"]
    assert qa.answer == (
        "<p> a brown dog </p> [BOX] [SEG] runs after <p> two children </p> [BOX] [SEG] near "
        "<p> a red ball </p> [BOX] [SEG]"
    )
    assert qa.object_ids == ["1", "2+3", "4"]


def test_official_videoglamm_gcg_layout_gives_one_expression_per_phrase(tmp_path):
    from fixtures import official_layouts as ol

    out = tmp_path / "out"
    curate({"videogcg": ol.make_videoglamm_gcg(tmp_path / "video_dataset")}, out)
    ds = CuratedDataset(out)
    checked = _assert_grounded_captions(ds, ol.EXPECTED_GCG)
    assert {e.expression_id for e in ds.iter_expressions()} == checked
    video = ds.video("videogcg/vidstg_gcg/2401075277")
    assert video.frame_names == ["000012", "000020", "000028", "000036"]
    caption = ds.expressions(video.video_id)[0]
    children = ds.phrase_masks(caption)[0]
    np.testing.assert_array_equal(children[3], fx.rect(4, 14, 4, 12) | fx.rect(4, 14, 30, 38))


def test_official_vidstg_sentence_to_the_last_frame_keeps_it(tmp_path):
    from fixtures import official_layouts as ol

    out = tmp_path / "out"
    curate({"vidstg": ol.make_vidstg_to_the_end(tmp_path / "vidstg")}, out)
    ds = CuratedDataset(out)
    last = ol.VIDSTG_FRAMES - 1
    (video,) = ds.iter_videos()
    assert video.video_id == f"vidstg/{ol.VIDSTG_VID}_1_{last}"
    assert video.frame_names == [f"{i:06d}" for i in range(1, last + 1)]  # used_segment 1..5, the end inclusive
    for exp in ds.expressions(video.video_id):
        assert exp.frame_span == [2, 5]  # temporal_gt [3, 6): fids 3, 4, 5, the last frame of the video included
    boxes = ds.objects(video.video_id)["0"].boxes
    assert boxes[-1] == [2.0 + last, 2.0, 14.0 + last, 20.0]
