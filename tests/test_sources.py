"""Each loader on a tiny fixture in its release layout, one test per quirk of docs/data-formats.md."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fixtures import sources as fx
from sparrow.data.qa_templates import marked_text
from sparrow.data.rle import decode_rle
from sparrow.data.sources import REGISTRY, LoadContext, get_source
from sparrow.storage import DataError


def load(name: str, root: Path, tmp_path: Path, splits=None, skip_bad: bool = False):
    ctx = LoadContext(
        source=name,
        root=root,
        frames_dir=tmp_path / "frames" / name,
        splits=None if splits is None else tuple(splits),
        skip_bad=skip_bad,
    )
    bundles = {b.video.video_id: b for b in get_source(name).load(ctx)}
    return bundles, ctx


def masks_of(obj) -> np.ndarray:
    shape = None
    for m in obj.masks:
        if m is not None:
            shape = tuple(m["size"])
    return np.stack([decode_rle(m, shape) for m in obj.masks])


def test_registry_names_every_source():
    assert set(REGISTRY) == {
        "mevis",
        "ref-youtube-vos",
        "ref-davis17",
        "revos",
        "tracking",
        "vidstg",
        "hcstvg",
        "videogcg",
    }
    with pytest.raises(ValueError, match="unknown source 'mevis2'.*mevis"):
        get_source("mevis2")


# -- MeViS -------------------------------------------------------------------------------------------------------


def test_mevis_positions_union_and_nulls(tmp_path):
    bundles, ctx = load("mevis", fx.make_mevis(tmp_path / "mevis"), tmp_path)
    b = bundles["mevis/a1b2c3d4e5f6"]
    # meta lists frames in reverse; masks are indexed by position in the *sorted* list
    assert b.video.frame_names == fx.MEVIS_FRAMES
    assert [Path(p).name for p in b.video.frame_paths] == [f"{n}.jpg" for n in fx.MEVIS_FRAMES]
    objects = {o.object_id: o for o in b.objects}
    assert set(objects) == {"0", "1"}  # int obj_id -> str, keyed by obj_id (not anno_id)
    exp = {e.expression_id: e for e in b.expressions}
    assert exp["mevis/a1b2c3d4e5f6/0"].object_ids == ["0", "1"]
    assert objects["1"].masks[2] is None and objects["1"].boxes[2] is None  # null in mask_dict = absent
    assert objects["0"].boxes[1] == [6.0, 2.0, 16.0, 10.0]  # rect x 6..15, y 2..9 -> exclusive max
    np.testing.assert_array_equal(masks_of(objects["0"])[3], fx.rect(2, 10, 14, 24))
    assert b.video.fps == 0.0 and b.has_gt


def test_mevis_valid_without_masks_is_unknown_ground_truth(tmp_path):
    bundles, ctx = load("mevis", fx.make_mevis(tmp_path / "mevis"), tmp_path, splits=["valid"])
    (b,) = bundles.values()
    assert b.video.split == "valid" and not b.has_gt
    assert b.objects == [] and [e.object_ids for e in b.expressions] == [[]]
    assert ctx.gt_splits == {"valid": False}


def test_mevis_valid_reads_mask_dict_when_present(tmp_path):
    bundles, ctx = load("mevis", fx.make_mevis(tmp_path / "mevis", valid_masks=True), tmp_path, splits=["valid"])
    (b,) = bundles.values()
    assert b.has_gt and [o.object_id for o in b.objects] == ["0"]
    assert b.expressions[0].object_ids == ["0"]


# -- Ref-YouTube-VOS ---------------------------------------------------------------------------------------------


def test_ytvos_palette_indices_frame_names_and_categories(tmp_path):
    root = fx.make_ytvos(tmp_path / "ytvos")
    png = root / "train" / "Annotations" / "0f1e2d3c4b" / "00000.png"
    with Image.open(png) as img:
        assert img.mode == "P"
        assert np.asarray(img.convert("L"))[0, 0] != 1  # the luminance trap the loader must avoid
    bundles, _ = load("ref-youtube-vos", root, tmp_path, splits=["train"])
    b = bundles["ref-youtube-vos/0f1e2d3c4b"]
    assert b.video.frame_names == fx.YTVOS_FRAMES and b.video.fps == 6.0
    objects = {o.object_id: o for o in b.objects}
    assert {k: o.category for k, o in objects.items()} == {"1": "dog", "2": "person"}
    np.testing.assert_array_equal(masks_of(objects["1"])[2], fx.rect(0, 8, 0, 16))  # frame "00010" is position 2
    assert objects["2"].masks[1] is None  # object 2 absent in frame "00005"
    assert [e.object_ids for e in b.expressions] == [["1"], ["2"]]


def test_ytvos_valid_subtracts_test_videos_and_has_no_gt(tmp_path):
    bundles, ctx = load("ref-youtube-vos", fx.make_ytvos(tmp_path / "ytvos"), tmp_path, splits=["valid", "test"])
    assert list(bundles) == ["ref-youtube-vos/validvid01"]
    (b,) = bundles.values()
    assert not b.has_gt and b.objects == [] and b.expressions[0].object_ids == []


def test_ytvos_valid_without_test_meta_reports_the_test_videos(tmp_path):
    root = fx.make_ytvos(tmp_path / "ytvos")
    shutil.rmtree(root / "meta_expressions" / "test")
    with pytest.raises(DataError, match="testvid001.*no frames"):
        load("ref-youtube-vos", root, tmp_path, splits=["valid"])
    bundles, ctx = load("ref-youtube-vos", root, tmp_path, splits=["valid"], skip_bad=True)
    assert list(bundles) == ["ref-youtube-vos/validvid01"]
    assert [s["item"] for s in ctx.skipped] == ["ref-youtube-vos/testvid001"]


# -- Ref-DAVIS17 -------------------------------------------------------------------------------------------------


def test_davis_converted_four_annotator_slots_and_void(tmp_path):
    bundles, ctx = load("ref-davis17", fx.make_davis_converted(tmp_path / "davis"), tmp_path)
    assert ctx.layout == "referformer-converted"
    b = bundles["ref-davis17/toy-boat"]
    assert b.video.split == "valid" and b.video.fps == 24.0
    slots = {e.expression_id.rsplit("/", 1)[1]: (e.object_ids, e.text) for e in b.expressions}
    assert slots["5"] == (["2"], "object 2 by slot 1")  # 4k + slot, objects in str order
    objects = {o.object_id: o for o in b.objects}
    assert set(objects) == {"1", "2"}  # 255 (void) is no object
    assert not masks_of(objects["1"])[:, 0, :].any()  # the void row is not object 1


def test_davis_raw_text_files_latin1_and_misspellings(tmp_path):
    bundles, ctx = load("ref-davis17", fx.make_davis_raw(tmp_path / "davis"), tmp_path)
    assert ctx.layout.startswith("raw")
    assert set(bundles) == {"ref-davis17/classic-car", "ref-davis17/dogs-scale"}
    car = bundles["ref-davis17/classic-car"]
    assert car.video.split == "valid"
    texts = {e.expression_id.rsplit("/", 1)[1]: e.text for e in car.expressions}
    assert texts["0"] == "a silver car" and texts["1"] == "a silver car driving"
    assert texts["2"] == "a café racer" and texts["3"] == "the café car"  # annotator 2, latin-1
    assert texts["6"] == "a man" and {o.object_id: o.category for o in car.objects} == {"1": "car", "2": "person"}


def test_davis_raw_annotator1_must_be_utf8(tmp_path):
    root = fx.make_davis_raw(tmp_path / "davis")
    (root / "davis_text_annotations" / "Davis17_annot1.txt").write_bytes('clasic-car 1 "a café"\n'.encode("latin-1"))
    with pytest.raises(DataError, match=r"Davis17_annot1\.txt: not valid utf-8"):
        load("ref-davis17", root, tmp_path)


# -- ReVOS -------------------------------------------------------------------------------------------------------


def test_revos_prefixed_keys_kinds_empty_targets_and_rle_variants(tmp_path):
    root = fx.make_revos(tmp_path / "revos")
    bundles, ctx = load("revos", root, tmp_path)
    b = bundles["revos/MOSE/abcd1234"]
    assert b.video.frame_paths[0].endswith("JPEGImages/MOSE/abcd1234/00000.jpg")
    kinds = {e.text: (e.kind, e.object_ids) for e in b.expressions}
    assert kinds["Which object is most likely to move?"] == ("reasoning", ["3"])
    assert kinds["the box on the right"] == ("referring", ["4"])
    assert kinds["the unicorn"] == ("referring", [])  # no-target instruction kept
    obj = {o.object_id: o for o in b.objects}["3"]
    masks = masks_of(obj)
    np.testing.assert_array_equal(masks[0], fx.rect(2, 10, 2, 10) | fx.rect(20, 30, 30, 40))  # list of RLE -> OR
    np.testing.assert_array_equal(masks[3], fx.rect(2, 10, 2, 10))  # uncompressed counts
    assert obj.masks[2] is None and isinstance(obj.masks[3]["counts"], str)


def test_revos_sa2va_layout_without_jpegimages(tmp_path):
    root = fx.make_revos(tmp_path / "revos")
    shutil.move(str(root / "JPEGImages" / "MOSE"), str(root / "MOSE"))
    (root / "JPEGImages").rmdir()
    bundles, ctx = load("revos", root, tmp_path)
    assert ctx.layout.startswith("sa2va")
    assert bundles["revos/MOSE/abcd1234"].video.frame_paths[0].endswith("revos/MOSE/abcd1234/00000.jpg")


# -- tracking ----------------------------------------------------------------------------------------------------


def test_tracking_box_conventions_groundtruth_rules_and_markup(tmp_path):
    bundles, ctx = load("tracking", fx.make_tracking(tmp_path / "trk"), tmp_path)
    got = bundles["tracking/GOT-10k/train/GOT-10k_Train_000001/00"]
    (obj,) = got.objects
    assert obj.boxes[0] == [4.0, 4.0, 16.0, 14.0]  # x,y,w,h -> x0,y0,x1,y1
    assert obj.boxes[5] is None and obj.boxes[6] is None  # NaN line, short line padded with zeros
    assert obj.boxes[7] == [11.0, 4.0, 23.0, 14.0]  # the blank line was skipped, not counted
    assert got.expressions[0].text == "a red box moving right" and got.expressions[0].object_ids == ["1"]

    a2d = bundles["tracking/A2D-Sentences/Images/clip01"]
    objects = {o.object_id: o for o in a2d.objects}
    assert objects["1"].boxes[0] == [4.0, 4.0, 16.0, 14.0]  # x1,y1,x2,y2 used as is
    assert objects["2"].boxes[0] == [30.0, 20.0, 40.0, 30.0]  # second object: box from its mask (S_k.png)
    caption, *phrases = a2d.expressions
    assert (
        caption.kind == "caption" and caption.text == "a red box passes a blue box" and caption.object_ids == ["1", "2"]
    )
    # id 3 of [a blue box](2, 3) has no masks of its own (mask/003/ or S_3.png): kept out of the phrase, noted
    assert caption.phrase_list() == [("a red box", ["1"]), ("a blue box", ["2"])]
    assert [(p.kind, p.text, p.object_ids) for p in phrases] == [
        ("referring", "a red box", ["1"]),
        ("referring", "a blue box", ["2"]),
    ]
    assert any("1 phrase id(s) without masks of their own" in n for n in ctx.notes)

    hc = bundles["tracking/HC-STVG/Val_Images/person01"]
    assert hc.video.split == "val"
    assert [(e.kind, e.text) for e in hc.expressions] == [("caption", "the man walking left"), ("referring", "the man")]
    assert ctx.gt_splits == {"train": True, "val": True}


def test_tracking_line_count_must_match_frames(tmp_path):
    root = fx.make_tracking(tmp_path / "trk")
    gt = root / "VOT_dataset" / "A2D_sentences" / "Images" / "clip01" / "groundtruth.txt"
    gt.write_text("1,2,3,4\n")
    with pytest.raises(DataError, match=r"groundtruth\.txt: 1 box lines for 8 frames"):
        load("tracking", root, tmp_path)


def test_tracking_missing_mask_file_is_an_error(tmp_path):
    root = fx.make_tracking(tmp_path / "trk")
    sample = root / "VOT_dataset" / "GOT-10k" / "train" / "GOT-10k_Train_000001" / "00"
    (sample / "mask" / "001" / "00000004.png").unlink()
    with pytest.raises(DataError, match="no mask for object 1 on frame 00000004.jpg"):
        load("tracking", root, tmp_path)


def test_tracking_root_may_be_the_parent_or_vot_dataset(tmp_path):
    root = fx.make_tracking(tmp_path / "trk")
    via_parent, _ = load("tracking", root, tmp_path)
    direct, _ = load("tracking", root / "VOT_dataset", tmp_path)
    assert set(via_parent) == set(direct) and len(direct) == 3


# -- mp4 sources -------------------------------------------------------------------------------------------------


def test_vidstg_segment_frames_spans_and_sentence_kinds(tmp_path):
    bundles, ctx = load("vidstg", fx.make_vidstg(tmp_path / "vidstg"), tmp_path)
    (b,) = bundles.values()
    assert b.video.video_id == "vidstg/1234567890_2_9"
    assert b.video.frame_names == [f"{i:06d}" for i in range(2, 10)]  # used_segment 2..9, its end inclusive
    frames_dir = tmp_path / "frames" / "vidstg"
    assert all(Path(p).is_file() and Path(p).is_relative_to(frames_dir) for p in b.video.frame_paths)
    assert (b.video.height, b.video.width, b.video.fps) == (32, 48, 10.0)
    by_kind = {e.kind: e for e in b.expressions}
    assert by_kind["declarative"].object_ids == ["0"] and by_kind["interrogative"].object_ids == ["1"]
    assert by_kind["declarative"].frame_span == [1, 4]  # temporal_gt [3, 6) -> positions of fids 3, 4, 5
    objects = {o.object_id: o for o in b.objects}
    assert objects["0"].category == "child" and objects["0"].boxes[0] == [4.0, 2.0, 14.0, 12.0]  # fid 2
    assert all(m is None for m in objects["0"].masks)  # boxes only


def test_hcstvg_hw_size_one_based_start_and_xywh(tmp_path):
    bundles, _ = load("hcstvg", fx.make_hcstvg(tmp_path / "hc"), tmp_path)
    (b,) = bundles.values()
    assert (b.video.height, b.video.width) == (36, 64)  # img_size is [H, W]
    assert b.video.num_frames == 12 and b.video.fps == pytest.approx(12 / 20)
    (obj,) = b.objects
    assert obj.boxes[:2] == [None, None]  # st_frame 3 (1-based) is position 2
    assert obj.boxes[2] == [10.0, 4.0, 30.0, 34.0] and obj.boxes[5] == [13.0, 4.0, 33.0, 34.0]
    assert obj.boxes[6] is None
    assert b.expressions[0].frame_span == [2, 6] and b.expressions[0].kind == "declarative"


def test_hcstvg_transposed_img_size_is_rejected(tmp_path):
    root = fx.make_hcstvg(tmp_path / "hc")
    ann = root / "anno_v2" / "train_v2.json"
    ann.write_text(ann.read_text().replace("[36, 64]", "[64, 36]"))
    with pytest.raises(DataError, match=r"77_ExAmPlE0001\.mp4: decoded frames are 64x36, img_size says 36x64"):
        load("hcstvg", root, tmp_path)


# -- VideoGLaMM GCG ----------------------------------------------------------------------------------------------


def test_videogcg_parts(tmp_path):
    bundles, ctx = load("videogcg", fx.make_videogcg(tmp_path / "vd"), tmp_path)
    stg = bundles["videogcg/vidstg_gcg/2401075277"]
    assert stg.video.frame_names == ["000000", "000003", "000006", "000009"]
    exp, *phrases = stg.expressions
    # every id of a phrase that has masks is kept (their union); VideoGLaMM's target is the first one
    assert exp.kind == "caption" and exp.text == "there is a white rabbit next to an adult"
    assert exp.phrase_list() == [("white rabbit", ["0", "1"]), ("adult", ["1"])]
    assert [(p.text, p.object_ids, p.kind) for p in phrases] == [
        ("white rabbit", ["0", "1"], "referring"),
        ("adult", ["1"], "referring"),
    ]
    assert {o.object_id: o.masks[2] for o in stg.objects}["1"] is None  # all-zero mask PNG -> absent

    mev = bundles["videogcg/mevis_gcg/a1b2c3d4e5f6"]
    assert mev.expressions[0].object_ids == ["0", "1"]
    assert mev.expressions[0].phrase_list()[0] == ("two boxes", ["0", "1"])  # matches expression obj_id [0, 1]: union

    ytvis = bundles["videogcg/video_gcg/7"]
    assert ytvis.expressions[0].text == "a dog chases a ball"
    assert ytvis.expressions[0].phrase_list() == [("dog", ["101", "103"]), ("ball", ["102"])]  # token_pos 1 twice
    obj103 = {o.object_id: o for o in ytvis.objects}["103"]
    np.testing.assert_array_equal(decode_rle(obj103.masks[0]), fx.rect(10, 12, 10, 12))  # uncompressed RLE
    assert any("without a dense caption" in n for n in ctx.notes)


def test_mevis_gcg_phrase_ids_must_match_an_expression(tmp_path):
    root = fx.make_videogcg(tmp_path / "vd")
    fx.write_json(root / "mevis_gcg" / "train" / "a1b2c3d4e5f6.json", {"caption": "[the boxes](1, 0) move"})
    with pytest.raises(DataError, match=r"a1b2c3d4e5f6\.json: phrase \[the boxes\]\(1, 0\) matches no MeViS"):
        load("videogcg", root, tmp_path)


def test_videogcg_phrase_ids_without_masks(tmp_path):
    root = fx.make_videogcg(tmp_path / "vd")
    captions = root / "vidstg_gcg" / "train_captions" / "2401075277.json"
    fx.write_json(captions, {"caption": "a [white rabbit](0, 5) near [an adult](1)"})
    bundles, ctx = load("videogcg", root, tmp_path)
    exp = bundles["videogcg/vidstg_gcg/2401075277"].expressions[0]
    assert marked_text(exp) == "a [white rabbit](0) near [an adult](1)"  # id 5 has no masks/005: out of the referent
    assert any("1 phrase id(s) without a mask folder" in n for n in ctx.notes)
    fx.write_json(captions, {"caption": "a [white rabbit](5, 0) near [an adult](1)"})
    with pytest.raises(DataError, match=r"masks/005: no masks for object 5 of phrase \[white rabbit\]"):
        load("videogcg", root, tmp_path)


def test_videogcg_root_may_be_a_single_per_sample_folder(tmp_path):
    root = fx.make_videogcg(tmp_path / "vd")
    bundles, ctx = load("videogcg", root / "vidstg_gcg", tmp_path)
    assert list(bundles) == ["videogcg/2401075277"]
    renamed = root / "videogcg"
    (root / "vidstg_gcg").rename(renamed)
    bundles, ctx = load("videogcg", renamed, tmp_path)
    assert list(bundles) == ["videogcg/2401075277"]


def test_a_malformed_entry_is_a_data_error_naming_the_file(tmp_path):
    root = fx.make_vidstg(tmp_path / "vidstg")
    ann = root / "vidstg_annotations" / "train_annotations.json"
    ann.write_text(ann.read_text().replace('{"tid": 1, "category": "ball"}', '{"category": "ball"}', 1))
    with pytest.raises(DataError, match=r"train_annotations\.json: malformed entry vidstg/1234567890_2_9 \(KeyError"):
        load("vidstg", root, tmp_path)
    bundles, ctx = load("vidstg", root, tmp_path, skip_bad=True)
    assert bundles == {} and ctx.skipped[0]["file"].endswith("train_annotations.json")


def test_tracking_mask_lookup_order(tmp_path):
    root = fx.make_tracking(tmp_path / "trk")
    sample = root / "VOT_dataset" / "GOT-10k" / "train" / "GOT-10k_Train_000001" / "00"
    # mask/S.png is a later candidate than mask/001/S.png: it must not win while the folder file exists
    fx.binary_png(sample / "mask" / "00000001.png", fx.rect(0, 32, 0, 48))
    (obj,) = load("tracking", root, tmp_path)[0]["tracking/GOT-10k/train/GOT-10k_Train_000001/00"].objects
    np.testing.assert_array_equal(decode_rle(obj.masks[0]), fx.rect(4, 14, 4, 16))
    (sample / "mask" / "001" / "00000001.png").unlink()
    (obj,) = load("tracking", root, tmp_path)[0]["tracking/GOT-10k/train/GOT-10k_Train_000001/00"].objects
    assert decode_rle(obj.masks[0]).all()  # now the fallback mask/S.png is read


def test_rle_variants_and_their_failures():
    from pycocotools import mask as mask_utils

    from sparrow.data.sources.base import ItemError, rle_track

    m = fx.rect(3, 9, 5, 20)
    compressed = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
    variants = {
        "str": {"size": [fx.H, fx.W], "counts": compressed["counts"].decode()},
        "bytes": {"size": [fx.H, fx.W], "counts": compressed["counts"]},
        "list": {"size": [fx.H, fx.W], "counts": fx._uncompressed_counts(m)},
        "per-frame list": [fx.rle(fx.rect(3, 9, 5, 12)), fx.rle(fx.rect(3, 9, 12, 20))],
    }
    for name, value in variants.items():
        rle, box = rle_track(value, (fx.H, fx.W), "f.json", name)
        assert isinstance(rle["counts"], str), name
        np.testing.assert_array_equal(decode_rle(rle), m, err_msg=name)
        assert box == [5.0, 3.0, 20.0, 9.0], name
    assert rle_track(None, (fx.H, fx.W), "f.json", "x") == (None, None)
    assert rle_track(fx.rle(np.zeros((fx.H, fx.W), bool)), (fx.H, fx.W), "f.json", "x") == (None, None)
    with pytest.raises(ItemError, match=r"f\.json: frame 3: RLE of size 32x47 for a 32x48 frame"):
        rle_track(fx.rle(np.ones((fx.H, fx.W - 1), bool)), (fx.H, fx.W), "f.json", "frame 3")
    broken = dict(variants["str"], counts=variants["str"]["counts"][:-2])
    with pytest.raises(ItemError, match="RLE counts cover"):
        rle_track(broken, (fx.H, fx.W), "f.json", "frame 0")


def test_corrupt_mp4_names_the_video_file(tmp_path):
    root = fx.make_hcstvg(tmp_path / "hc")
    (root / "Video" / "sub1" / "77_ExAmPlE0001.mp4").write_bytes(b"not an mp4" * 50)
    with pytest.raises(DataError, match=r"77_ExAmPlE0001\.mp4: cannot decode video"):
        load("hcstvg", root, tmp_path)


def test_tracking_root_may_be_one_sub_source(tmp_path):
    root = fx.make_tracking(tmp_path / "trk")
    bundles, ctx = load("tracking", root / "VOT_dataset" / "HC-STVG", tmp_path)
    assert list(bundles) == ["tracking/HC-STVG/Val_Images/person01"]
