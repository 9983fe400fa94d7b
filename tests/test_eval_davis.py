"""DAVIS-2017 protocols (sparrow.eval.davis) against the faithful reference of the official evaluation, on small
palette-PNG trees; Ref-DAVIS17's four-annotator protocol; and every bad input named by sequence and frame."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import sparrow  # noqa: F401
from fixtures.reference_davis import ref_davis_table
from sparrow.eval.davis import TABLE_COLUMNS, evaluate_davis, list_sequences
from sparrow.eval.png import write_index_png
from sparrow.eval.ref_davis import FOLDER_SETS, evaluate_ref_davis
from sparrow.storage import DataError

H, W, T = 40, 56, 7


def _objects(rng, n):
    """(T, H, W) label maps with n moving rectangles/blobs, some void pixels, an object leaving the frame."""
    labels = np.zeros((T, H, W), np.uint8)
    for k in range(1, n + 1):
        y, x = rng.integers(0, H - 12), rng.integers(0, W - 14)
        h, w = rng.integers(6, 14), rng.integers(6, 16)
        vy, vx = rng.integers(-2, 3, 2)
        for t in range(T):
            yy, xx = y + vy * t, x + vx * t
            if k == n and t == T - 2:
                continue  # absent in one frame
            labels[t, max(yy, 0) : max(yy + h, 0), max(xx, 0) : max(xx + w, 0)] = k
    labels[:, 0:2, W - 6 : W] = 255  # void in a corner
    return labels


def _predict(rng, labels, perm, extra=0):
    """Labels renamed by ``perm`` (GT id -> predicted id), shifted a little, plus spurious proposals."""
    pred = np.zeros_like(labels)
    for gt_id, pred_id in perm.items():
        m = labels == gt_id
        m = np.roll(m, (int(rng.integers(-2, 3)), int(rng.integers(-2, 3))), axis=(1, 2))
        pred[m] = pred_id
    for e in range(extra):
        y, x = rng.integers(0, H - 5), rng.integers(0, W - 5)
        pred[:, y : y + 4, x : x + 4] = max(perm.values(), default=0) + 1 + e
    return pred


def _write(folder: Path, seq: str, labels: np.ndarray, names=None) -> None:
    for t, lab in enumerate(labels):
        write_index_png(folder / seq / f"{(names or [f'{i:05d}' for i in range(T)])[t]}.png", lab)


@pytest.fixture()
def davis(tmp_path):
    """A DAVIS root with three sequences (unsupervised and semi-supervised annotations) and one result folder."""
    rng = np.random.default_rng(0)
    root, res = tmp_path / "DAVIS", tmp_path / "results"
    seqs = {"bear": 2, "camel": 1, "dogs": 3}
    gts = {}
    for seq, n in seqs.items():
        labels = _objects(rng, n)
        gts[seq] = labels
        _write(root / "Annotations_unsupervised" / "480p", seq, labels)
        _write(root / "Annotations" / "480p", seq, labels)
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("\n".join(seqs) + "\n")
    # Unsupervised results: ids permuted (Hungarian must undo it) plus spurious proposals.
    _write(res / "unsup", "bear", _predict(rng, gts["bear"], {1: 2, 2: 1}, extra=2))
    _write(res / "unsup", "camel", _predict(rng, gts["camel"], {1: 3}))  # ids 1, 2 empty
    _write(res / "unsup", "dogs", _predict(rng, gts["dogs"], {1: 1, 2: 3}))  # one object missed
    # Semi-supervised results: ids by value; first/last frames garbage (never read by the protocol).
    for seq, n in seqs.items():
        pred = _predict(rng, gts[seq], {k: k for k in range(1, n)})
        pred[0] = pred[-1] = 1
        _write(res / "semi", seq, pred)
    return root, res, list(seqs)


def _assert_matches_reference(result, root, res_dir, seqs, semi):
    ann = root / ("Annotations" if semi else "Annotations_unsupervised") / "480p"
    table, per_object = ref_davis_table(str(ann), str(res_dir), seqs, semi)
    ours = [result.table[c] for c in TABLE_COLUMNS]
    assert np.allclose(ours, table, rtol=0, atol=1e-12), (ours, table)
    ours_objects = {o.name: (o.j_mean, o.f_mean) for o in result.objects}
    assert list(ours_objects) == list(per_object)
    for name, (j, f) in per_object.items():
        assert abs(ours_objects[name][0] - j) <= 1e-12 and abs(ours_objects[name][1] - f) <= 1e-12


def test_unsupervised_matches_reference(davis):
    root, res, seqs = davis
    result = evaluate_davis(root, res / "unsup", mode="unsupervised")
    assert result.sequences == seqs  # from ImageSets/2017/val.txt
    assert [o.name for o in result.objects] == ["bear_1", "bear_2", "camel_1", "dogs_1", "dogs_2", "dogs_3"]
    _assert_matches_reference(result, root, res / "unsup", seqs, semi=False)
    # Hungarian undid the permutation: the matched objects score well, the missed one scores ~0.
    bear = [o for o in result.objects if o.sequence == "bear"]
    assert all(o.j_mean > 0.5 for o in bear)
    assert result.table["J&F-Mean"] == pytest.approx((result.table["J-Mean"] + result.table["F-Mean"]) / 2)


def test_semisupervised_matches_reference_and_ignores_first_last(davis):
    root, res, seqs = davis
    result = evaluate_davis(root, res / "semi", mode="semi-supervised")
    _assert_matches_reference(result, root, res / "semi", seqs, semi=True)
    assert all(len(o.j_frames) == T - 2 for o in result.objects)
    # Deleting the first/last prediction frames changes nothing: they are not read.
    for seq in seqs:
        (res / "semi" / seq / "00000.png").unlink()
    again = evaluate_davis(root, res / "semi", mode="semi-supervised")
    assert again.table == result.table


def test_csv_layout(davis, tmp_path):
    root, res, _ = davis
    result = evaluate_davis(root, res / "unsup")
    text = result.global_csv()
    assert text.splitlines()[0] == "J&F-Mean,J-Mean,J-Recall,J-Decay,F-Mean,F-Recall,F-Decay"
    assert text.splitlines()[1].split(",")[0] == f"{result.table['J&F-Mean']:.3f}"
    assert result.global_csv(5).splitlines()[1].split(",")[1] == f"{result.table['J-Mean']:.5f}"
    g, s = result.write_csv(tmp_path / "out")
    assert g.read_text() == text and s.read_text().startswith("Sequence,J-Mean,F-Mean\nbear_1,")


def test_sequences_argument_and_listing(davis):
    root, res, seqs = davis
    one = evaluate_davis(root, res / "unsup", sequences=["camel"])
    assert [o.name for o in one.objects] == ["camel_1"]
    (root / "ImageSets" / "2017" / "val.txt").unlink()
    assert list_sequences(root) == sorted(seqs)


def _expect(match, root, res, **kw):
    with pytest.raises(DataError, match=match):
        evaluate_davis(root, res, **kw)


def test_bad_inputs_named(davis):
    root, res, _ = davis
    unsup = res / "unsup"
    (unsup / "camel" / "00003.png").unlink()
    _expect(r"sequence camel, frame 00003: missing file", root, unsup)
    write_index_png(unsup / "camel" / "00003.png", np.zeros((H, W), np.uint8))
    write_index_png(unsup / "camel" / "00099.png", np.zeros((H, W), np.uint8))
    _expect(r"sequence camel: prediction frames 00099 are not ground-truth frames", root, unsup)
    evaluate_davis(root, unsup, allow_extra_frames=True)
    (unsup / "camel" / "00099.png").unlink()
    write_index_png(unsup / "camel" / "00002.png", np.zeros((H + 1, W), np.uint8))
    _expect(r"sequence camel, frame 00002: prediction size \(41, 56\) differs", root, unsup)
    (unsup / "camel" / "00002.png").write_bytes(b"not a png")
    _expect(r"sequence camel, frame 00002: cannot read", root, unsup)
    from PIL import Image

    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(unsup / "camel" / "00002.png")
    _expect(r"sequence camel, frame 00002: .* single-channel", root, unsup)
    labels = np.zeros((H, W), np.uint8)
    labels[5:10, 5:10] = 21
    write_index_png(unsup / "camel" / "00002.png", labels)
    _expect(r"sequence camel: prediction index 21 is higher than the maximum number of proposals \(20\)", root, unsup)
    labels[5:10, 5:10] = 255
    write_index_png(unsup / "camel" / "00002.png", labels)
    _expect(r"0/255 binary masks", root, unsup)
    semi = res / "semi"
    labels[5:10, 5:10] = 2
    write_index_png(semi / "camel" / "00003.png", labels)
    _expect(
        r"sequence camel: prediction index 2 is higher than the number of objects \(1\)",
        root,
        semi,
        mode="semi-supervised",
    )
    _expect(r"results folder .* does not exist", root, res / "nothing-here")
    (res / "empty").mkdir()
    _expect(r"sequence bear: no prediction folder", root, res / "empty")
    _expect(r"no ground-truth PNGs", root, unsup, sequences=["zebra"])
    with pytest.raises(ValueError, match="mode"):
        evaluate_davis(root, unsup, mode="supervised")


def test_short_sequence_semisupervised(tmp_path):
    root = tmp_path / "D"
    labels = np.zeros((2, H, W), np.uint8)
    labels[:, 3:9, 3:9] = 1
    for t in range(2):
        write_index_png(root / "Annotations" / "480p" / "s" / f"{t:05d}.png", labels[t])
        write_index_png(tmp_path / "r" / "s" / f"{t:05d}.png", labels[t])
    with pytest.raises(DataError, match="at least 3"):
        evaluate_davis(root, tmp_path / "r", sequences=["s"], mode="semi-supervised")


# ----------------------------------------------------------------------------------------------------------------
# Ref-DAVIS17: four annotator folders, each scored unsupervised; their J&F and the mean
# ----------------------------------------------------------------------------------------------------------------
def test_ref_davis_four_annotators(davis, tmp_path):
    root, res, seqs = davis
    rng = np.random.default_rng(1)
    preds = tmp_path / "refdavis"
    for i, folder in enumerate(FOLDER_SETS["sparrow"]):
        for seq in seqs:
            from sparrow.eval.davis import read_gt_sequence

            objects, void, names = read_gt_sequence(root, seq)
            labels = np.zeros(objects.shape[1:], np.uint8)
            for k in range(objects.shape[0]):
                if rng.random() < 0.2 * i:
                    continue  # later annotators' expressions miss more objects
                labels[np.roll(objects[k], i, axis=2)] = k + 1
            _write(preds / folder, seq, labels, names)
    result = evaluate_ref_davis(root, preds)
    assert list(result.jf) == list(FOLDER_SETS["sparrow"])
    for folder in FOLDER_SETS["sparrow"]:
        table, _ = ref_davis_table(
            str(root / "Annotations_unsupervised" / "480p"), str(preds / folder), seqs, semi=False
        )
        assert result.jf[folder] == pytest.approx(table[0], abs=1e-12)
    assert result.mean == pytest.approx(np.mean(list(result.jf.values())), abs=1e-15)
    assert result.table_mean["J-Mean"] == pytest.approx(np.mean([r.table["J-Mean"] for r in result.runs.values()]))
    # ReferFormer's folder names are found too; an incomplete set is an error naming what is missing.
    for i, folder in enumerate(FOLDER_SETS["sparrow"]):
        (preds / folder).rename(preds / FOLDER_SETS["referformer"][i])
    assert evaluate_ref_davis(root, preds).mean == result.mean
    import shutil

    shutil.rmtree(preds / "anno_3")
    with pytest.raises(DataError, match="anno_3"):
        evaluate_ref_davis(root, preds)
