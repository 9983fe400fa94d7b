"""MeViS / Ref-YouTube-VOS per-expression J&F from a curated dataset (sparrow.eval.rvos) and the submission
export (sparrow.eval.export): union of referents, the MeViS missing-prediction rule, errors naming the frame,
zip layouts, and Ref-DAVIS17's merged palette PNGs."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

import sparrow  # noqa: F401
from fixtures.reference_davis import ref_boundary, ref_iou
from sparrow.data.records import ExpressionRecord, ObjectRecord, VideoRecord, submission_names
from sparrow.data.rle import encode_rle
from sparrow.eval.export import (
    merge_objects,
    write_expression_masks,
    write_ref_davis_annotator,
    zip_submission,
)
from sparrow.eval.png import read_index_png, write_binary_png
from sparrow.eval.rvos import evaluate_rvos
from sparrow.storage import DataError, atomic_write_json, write_jsonl

H, W, T = 36, 52, 6


def _rect(t_range, y, x, h, w):
    m = np.zeros((T, H, W), bool)
    for t in t_range:
        m[t, y + t : y + t + h, x : x + w] = True
    return m


@pytest.fixture()
def curated(tmp_path):
    """Two MeViS-like videos; expression 'a/1' refers to two objects, object 'b:1' leaves the video."""
    root = tmp_path / "curated"
    names = [f"{i:05d}" for i in range(T)]
    objects = {
        ("mevis/a", "0"): _rect(range(T), 2, 3, 8, 10),
        ("mevis/a", "1"): _rect(range(T), 15, 30, 9, 12),
        ("mevis/b", "0"): _rect(range(T), 5, 5, 12, 20),
        ("mevis/b", "1"): _rect(range(3), 20, 35, 5, 6),
    }
    videos = [
        VideoRecord(v, "mevis", "valid_u", [f"frames/{v}/{n}.jpg" for n in names], names, H, W, 6.0)
        for v in ("mevis/a", "mevis/b")
    ]
    objs = [
        ObjectRecord(v, o, "thing", [encode_rle(m[t]) if m[t].any() else None for t in range(T)], [None] * T)
        for (v, o), m in objects.items()
    ]
    exps = [
        ExpressionRecord("mevis/a/0", "mevis/a", "the left one", ["0"], "referring"),
        ExpressionRecord("mevis/a/1", "mevis/a", "both of them", ["0", "1"], "referring"),
        ExpressionRecord("mevis/b/0", "mevis/b", "the big one", ["0"], "referring"),
        ExpressionRecord("mevis/b/1", "mevis/b", "the one that leaves", ["1"], "referring"),
    ]
    write_jsonl(root / "videos.jsonl", [v.to_json() for v in videos])
    write_jsonl(root / "objects.jsonl", [o.to_json() for o in objs])
    write_jsonl(root / "expressions.jsonl", [e.to_json() for e in exps])
    write_jsonl(root / "qa.jsonl", [])
    atomic_write_json(root / "meta.json", {"sources": ["mevis"]})
    gts = {
        "mevis/a/0": objects[("mevis/a", "0")],
        "mevis/a/1": objects[("mevis/a", "0")] | objects[("mevis/a", "1")],
        "mevis/b/0": objects[("mevis/b", "0")],
        "mevis/b/1": objects[("mevis/b", "1")],
    }
    return root, names, gts


def _predictions(tmp_path, names, gts, skip=()):
    rng = np.random.default_rng(0)
    ann = tmp_path / "out" / "Annotations"
    preds = {}
    for exp_id, gt in gts.items():
        pred = np.roll(gt, (int(rng.integers(-2, 3)), int(rng.integers(-2, 3))), axis=(1, 2))
        pred[-1] = False  # a missed frame
        preds[exp_id] = pred
        if exp_id in skip:
            continue
        video, exp = submission_names(exp_id.rsplit("/", 1)[0], exp_id)
        write_expression_masks(ann, video, exp, names, pred)
    return ann, preds


def test_per_expression_jf_matches_reference(curated, tmp_path):
    root, names, gts = curated
    ann, preds = _predictions(tmp_path, names, gts)
    result = evaluate_rvos(root, ann)
    assert [s.expression_id for s in result.expressions] == list(gts)
    for s in result.expressions:
        gt, pred = gts[s.expression_id], preds[s.expression_id]
        assert abs(s.j - ref_iou(gt, pred).mean()) <= 1e-12
        assert abs(s.f - ref_boundary(gt, pred).mean()) <= 1e-12
    assert result.j == pytest.approx(np.mean([s.j for s in result.expressions]), abs=1e-15)
    assert result.jf == pytest.approx((result.j + result.f) / 2, abs=1e-15)
    assert not result.missing and not result.warnings


def test_union_of_referents(curated, tmp_path):
    """A prediction of only one of the two referents is penalised: the target is their union."""
    root, names, gts = curated
    ann = tmp_path / "Annotations"
    write_expression_masks(ann, "a", "1", names, gts["mevis/a/0"])
    result = evaluate_rvos(root, ann, expression_ids=["mevis/a/1"])
    assert result.expressions[0].j == pytest.approx(ref_iou(gts["mevis/a/1"], gts["mevis/a/0"]).mean())
    assert result.expressions[0].j < 0.6


def test_missing_prediction_scores_zero_and_is_listed(curated, tmp_path):
    root, names, gts = curated
    ann, _ = _predictions(tmp_path, names, gts, skip=("mevis/b/1",))
    result = evaluate_rvos(root, ann)
    by_id = {s.expression_id: s for s in result.expressions}
    assert by_id["mevis/b/1"].missing and by_id["mevis/b/1"].j == 0.0 and by_id["mevis/b/1"].f == 0.0
    assert result.missing == ["b/1"] and "1 of 4 expressions have no prediction" in result.warnings[0]
    assert result.j == pytest.approx(np.mean([s.j for s in result.expressions]))
    # A whole missing video (MeViS' rule) scores its expressions 0 too.
    import shutil

    shutil.rmtree(ann / "a")
    assert sorted(evaluate_rvos(root, ann).missing) == ["a/0", "a/1", "b/1"]


def test_a_prediction_folder_that_does_not_exist_is_an_error_naming_it(curated, tmp_path):
    root, _, _ = curated
    with pytest.raises(DataError, match=f"prediction folder {tmp_path / 'nowhere'} does not exist"):
        evaluate_rvos(root, tmp_path / "nowhere")


def test_bad_prediction_files_named(curated, tmp_path):
    root, names, gts = curated
    ann, _ = _predictions(tmp_path, names, gts)
    (ann / "a" / "0" / "00003.png").unlink()
    with pytest.raises(DataError, match="video a, expression 0, frame 00003: missing file"):
        evaluate_rvos(root, ann)
    (ann / "a" / "0" / "00003.png").write_bytes(b"garbage")
    with pytest.raises(DataError, match="video a, expression 0, frame 00003: cannot read"):
        evaluate_rvos(root, ann)
    write_binary_png(ann / "a" / "0" / "00003.png", np.zeros((H, W + 2), bool))
    with pytest.raises(DataError, match=r"frame 00003: prediction size \(36, 54\) differs"):
        evaluate_rvos(root, ann)
    write_binary_png(ann / "a" / "0" / "00003.png", np.zeros((H, W), bool))
    write_binary_png(ann / "a" / "0" / "3.png", np.zeros((H, W), bool))
    with pytest.raises(DataError, match="video a, expression 0: 3.png are not frames of the video"):
        evaluate_rvos(root, ann)
    assert len(evaluate_rvos(root, ann, allow_extra_frames=True).expressions) == 4
    with pytest.raises(DataError, match="unknown expression ids"):
        evaluate_rvos(root, ann, expression_ids=["mevis/zzz/0"], allow_extra_frames=True)


def test_palette_and_gray_predictions_read_as_mevis(curated, tmp_path):
    """Any non-zero grey level is foreground (MeViS reads with IMREAD_GRAYSCALE)."""
    root, names, gts = curated
    ann = tmp_path / "Annotations"
    from PIL import Image

    for t, name in enumerate(names):
        path = ann / "b" / "0" / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.where(gts["mevis/b/0"][t], 128, 0).astype(np.uint8)).save(path)
    s = evaluate_rvos(root, ann, expression_ids=["mevis/b/0"]).expressions[0]
    assert s.j == 1.0 and s.f == 1.0


def test_submission_zip_layouts(curated, tmp_path):
    root, names, gts = curated
    ann, _ = _predictions(tmp_path, names, gts)
    with zipfile.ZipFile(zip_submission(ann, tmp_path / "ytvos.zip", parent=True)) as zf:
        members = zf.namelist()
    assert "Annotations/a/1/00000.png" in members and len(members) == 4 * T
    with zipfile.ZipFile(zip_submission(ann, tmp_path / "mevis.zip", parent=False)) as zf:
        zf.extractall(tmp_path / "unzipped")
        assert "a/1/00000.png" in zf.namelist()
    assert evaluate_rvos(root, tmp_path / "unzipped").jf == evaluate_rvos(root, ann).jf
    assert submission_names("mevis/a1b2c3", "mevis/a1b2c3/12") == ("a1b2c3", "12")


def test_ref_davis_merge_and_palette_pngs(tmp_path):
    probs = np.zeros((2, 1, 3, 4), np.float32)
    probs[0, 0, 0, :] = [0.4, 0.6, 0.9, 0.5]
    probs[1, 0, 0, :] = [0.45, 0.6, 0.95, 0.0]
    probs[1, 0, 1, 0] = 1.0
    labels = merge_objects(list(probs))
    # < 0.5 dropped, background 0.1 first, ties to the lowest object, the largest probability wins.
    assert labels[0].tolist() == [[0, 1, 2, 1], [2, 0, 0, 0], [0, 0, 0, 0]]
    binary = [np.ones((1, 2, 2), bool), np.ones((1, 2, 2), bool)]
    assert merge_objects(binary).tolist() == [[[1, 1], [1, 1]]]  # overlaps go to the lowest object index
    paths = write_ref_davis_annotator(tmp_path, "Davis17_annot1", "bear", ["00000"], list(probs))
    assert paths[0] == tmp_path / "Davis17_annot1" / "bear" / "00000.png"
    assert np.array_equal(read_index_png(paths[0], "x"), labels[0])
