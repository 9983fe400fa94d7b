"""SPARROW-Mini: determinism, the real on-disk quirks of every written layout, unambiguous expressions, hard cases."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sparrow.data.boxes import mask_to_box
from sparrow.data.rle import decode_rle
from sparrow.data.synthetic import (
    HARD_CASES,
    SynthConfig,
    ensure_generated,
    generate,
    hard_case_examples,
    is_complete,
    main_synth,
    scene_statistics,
)
from sparrow.data.synthetic.expressions import Expression, World, qa_pair
from sparrow.data.synthetic.scene import BackgroundSpec, ObjectSpec, SceneSpec, render

MARKUP = re.compile(r"\[([^\]]+)\]\(([^)]+)\)")
SOURCES = ("mevis", "ref-youtube-vos", "ref-davis17", "tracking", "vidstg", "videogcg", "revos")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> Path:
    return generate("smoke", 0, tmp_path_factory.mktemp("synth") / "seed0")


@pytest.fixture(scope="module")
def manifest(smoke: Path) -> dict:
    return json.loads((smoke / "manifest.json").read_text())


def tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def load(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


def png_array(path: Path) -> tuple[str, np.ndarray]:
    with Image.open(path) as image:
        return image.mode, np.array(image)


# -- determinism and manifest ------------------------------------------------------------------------------------


def test_same_seed_gives_byte_identical_tree_and_another_seed_differs(smoke: Path, tmp_path: Path):
    first = tree_digest(smoke)
    again = tree_digest(generate("smoke", 0, tmp_path / "again"))
    assert again == first
    other = tree_digest(generate("smoke", 1, tmp_path / "other"))
    jpeg_first = {h for p, h in first.items() if p.endswith(".jpg")}
    jpeg_other = {h for p, h in other.items() if p.endswith(".jpg")}
    assert jpeg_first and jpeg_other and not (jpeg_first & jpeg_other)


def test_another_process_with_another_hash_seed_writes_the_same_bytes(smoke: Path, tmp_path: Path):
    """Nothing may depend on set or dict-of-str iteration order (PYTHONHASHSEED) or on process state."""
    import os
    import subprocess
    import sys

    out = tmp_path / "child"
    env = dict(os.environ, PYTHONHASHSEED="12345")
    code = "import sparrow, sys; from sparrow.data.synthetic import generate; generate('smoke', 0, sys.argv[1])"
    subprocess.run([sys.executable, "-c", code, str(out)], check=True, env=env, timeout=300)
    assert tree_digest(out) == tree_digest(smoke)


def test_manifest_names_every_source_root_and_counts_match_config(smoke: Path, manifest: dict):
    cfg = SynthConfig.for_profile("smoke")
    assert tuple(manifest["sources"]) == SOURCES
    for name, root in manifest["sources"].items():
        assert (smoke / root).is_dir(), name
    assert manifest["sources"]["tracking"] == "tracking/VOT_dataset"
    counts = manifest["counts"]
    assert counts["mevis"]["valid_u"]["videos"] == cfg.mevis_valid_u
    assert counts["ref-davis17"]["valid"]["videos"] == cfg.davis_valid
    assert counts["vidstg"]["test"]["videos"] == cfg.vidstg_test
    assert counts["videogcg"]["val"]["videos"] == cfg.videogcg_val
    total = sum(c["videos"] for splits in counts.values() for c in splits.values())
    assert total == cfg.train_videos + cfg.held_out_videos
    assert set(manifest["hard_cases"]) == set(HARD_CASES)
    assert all(set(v["tags"]) <= set(HARD_CASES) for videos in manifest["videos"].values() for v in videos)
    assert is_complete(smoke, "smoke", 0) and not is_complete(smoke, "smoke", 1)


def test_paper_profile_is_refused():
    with pytest.raises(ValueError, match="real datasets"):
        SynthConfig.for_profile("paper")
    with pytest.raises(ValueError):
        SynthConfig.for_profile("tiny")


# -- MeViS / ReVOS -----------------------------------------------------------------------------------------------


def test_mevis_layout(smoke: Path):
    cfg = SynthConfig.for_profile("smoke")
    saw_null = saw_multi = False
    for split in ("train", "valid_u", "valid"):
        root = smoke / "mevis" / split
        meta = load(root / "meta_expressions.json")["videos"]
        masks = load(root / "mask_dict.json")  # valid too: written for local scoring
        assert all(isinstance(k, str) for k in masks)
        for vid, video in meta.items():
            assert re.fullmatch(r"[0-9a-f]{12}", vid)
            assert video["frames"] == [f"{t:05d}" for t in range(cfg.num_frames)]
            for name in video["frames"]:
                assert (root / "JPEGImages" / vid / f"{name}.jpg").is_file()
            for exp in video["expressions"].values():
                assert exp["exp"] and exp["exp"] == exp["exp"].lower()
                assert all(isinstance(i, int) for i in exp["obj_id"] + exp["anno_id"])
                assert len(exp["obj_id"]) == len(exp["anno_id"]) >= 1
                saw_multi |= len(exp["obj_id"]) > 1
                union = np.zeros((cfg.height, cfg.width), dtype=bool)
                for anno in exp["anno_id"]:
                    track = masks[str(anno)]
                    assert len(track) == len(video["frames"])
                    assert any(rle is not None for rle in track)
                    for rle in track:
                        if rle is None:
                            saw_null = True
                            continue
                        assert isinstance(rle["counts"], str) and rle["size"] == [cfg.height, cfg.width]
                        union |= decode_rle(rle, (cfg.height, cfg.width))
                assert union.any()
    assert saw_null and saw_multi


def test_revos_layout(smoke: Path):
    root = smoke / "revos"
    masks = load(root / "mask_dict.json")
    foreground = load(root / "mask_dict_foreground.json")
    types, lists, empty = set(), False, False
    for split in ("train", "valid"):
        meta = load(root / f"meta_expressions_{split}_.json")["videos"]
        for key, video in meta.items():
            origin, vid = key.split("/")
            assert origin in {"MOSE", "LV-VIS", "OVIS", "TAO", "UVO"}
            assert (root / "JPEGImages" / origin / vid / f"{video['frames'][0]}.jpg").is_file()
            assert len(foreground[key]["masks_rle"]) == len(video["frames"])
            for exp in video["expressions"].values():
                types.add(exp["type_id"])
                empty |= exp["obj_id"] == [] and exp["anno_id"] == []
                for anno in exp["anno_id"]:
                    for entry in masks[str(anno)]:
                        lists |= isinstance(entry, list)
                        if isinstance(entry, list):
                            assert decode_rle(entry).any()
    assert types == {0, 1} and lists
    assert empty  # a no-target instruction (empty id lists)


# -- Ref-YouTube-VOS ---------------------------------------------------------------------------------------------


def test_ref_youtube_vos_layout(smoke: Path):
    cfg = SynthConfig.for_profile("smoke")
    root = smoke / "ref-youtube-vos"
    train = load(root / "meta_expressions" / "train" / "meta_expressions.json")["videos"]
    valid = load(root / "meta_expressions" / "valid" / "meta_expressions.json")["videos"]
    test = load(root / "meta_expressions" / "test" / "meta_expressions.json")["videos"]
    objects = load(root / "train" / "meta.json")["videos"]
    assert set(test) <= set(valid) and len(set(valid) - set(test)) == cfg.ytvos_valid
    for vid in set(valid) - set(test):
        assert (root / "valid" / "JPEGImages" / vid).is_dir()
        assert (root / "valid" / "Annotations" / vid).is_dir()
    for vid in test:
        assert (root / "test" / "JPEGImages" / vid).is_dir() and not (root / "valid" / "JPEGImages" / vid).exists()
    for vid, video in train.items():
        assert re.fullmatch(r"[0-9a-f]{10}", vid)
        assert video["frames"] == [f"{5 * t:05d}" for t in range(cfg.num_frames)]
        ids = set()
        for name in video["frames"]:
            mode, raw = png_array(root / "train" / "Annotations" / vid / f"{name}.png")
            assert mode == "P"
            ids |= set(np.unique(raw).tolist())
            with Image.open(root / "train" / "Annotations" / vid / f"{name}.png") as image:
                luminance = np.array(image.convert("L"))
            assert (luminance[raw > 0] != raw[raw > 0]).all()  # convert("L") would give palette luminance
        assert ids - {0} == {int(k) for k in objects[vid]["objects"]}
        for exp in video["expressions"].values():
            assert isinstance(exp["obj_id"], str) and exp["obj_id"] in objects[vid]["objects"]
        for obj_id, obj in objects[vid]["objects"].items():
            assert obj["category"] and set(obj["frames"]) <= set(video["frames"])
            for name in obj["frames"]:
                raw = png_array(root / "train" / "Annotations" / vid / f"{name}.png")[1]
                assert (raw == int(obj_id)).any()


# -- Ref-DAVIS17 -------------------------------------------------------------------------------------------------


def test_ref_davis17_layout_and_evaluation_root(smoke: Path):
    root = smoke / "ref-davis17"
    davis = root / "DAVIS"
    for split, image_set in (("train", "train"), ("valid", "val")):
        meta = load(root / "meta_expressions" / split / "meta_expressions.json")["videos"]
        objects = load(root / split / "meta.json")["videos"]
        listed = (davis / "ImageSets" / "2017" / f"{image_set}.txt").read_text().split()
        assert sorted(listed) == sorted(meta)
        for name, video in meta.items():
            assert "frames" not in objects[name] and all("frames" not in o for o in objects[name]["objects"].values())
            ids = sorted(objects[name]["objects"])
            expressions = video["expressions"]
            assert list(expressions) == [str(i) for i in range(4 * len(ids))]
            for k, obj_id in enumerate(ids):
                assert {expressions[str(4 * k + j)]["obj_id"] for j in range(4)} == {obj_id}
            first = video["frames"][0]
            mode, raw = png_array(davis / "Annotations_unsupervised" / "480p" / name / f"{first}.png")
            assert mode == "P" and int(raw.max()) == len(ids)  # the toolkit counts objects on frame 0
            for frame in video["frames"]:
                converted = root / split / "JPEGImages" / name / f"{frame}.jpg"
                assert converted.read_bytes() == (davis / "JPEGImages" / "480p" / name / f"{frame}.jpg").read_bytes()
                assert (root / split / "Annotations" / name / f"{frame}.png").read_bytes() == (
                    davis / "Annotations_unsupervised" / "480p" / name / f"{frame}.png"
                ).read_bytes()


# -- tracking ----------------------------------------------------------------------------------------------------


def _samples(base: Path) -> list[Path]:
    return sorted(p.parent for p in base.rglob("groundtruth.txt"))


def test_tracking_layout_boxes_match_masks(smoke: Path):
    base = smoke / "tracking" / "VOT_dataset"
    samples = _samples(base)
    kinds = {"GOT-10k": 0, "LaSOT": 0, "A2D_sentences": 0}
    plain = marked = 0
    for sample in samples:
        family = sample.relative_to(base).parts[0]
        kinds[family] += 1
        if family in ("GOT-10k", "A2D_sentences"):
            assert sample.name == "00"  # the scene level
        frames = sorted((sample / "img").iterdir())
        assert len(frames) >= 8
        lines = [line for line in (sample / "groundtruth.txt").read_text().splitlines() if line.strip()]
        assert len(lines) == len(frames)
        caption = (sample / "nlp.txt").read_text().strip()
        assert caption
        spans = MARKUP.findall(caption)
        marked += bool(spans)
        plain += not spans
        object_dirs = sorted(p.name for p in (sample / "mask").iterdir())
        if family == "A2D_sentences":
            assert [ids for _, ids in spans] == ["1", "2"] and object_dirs == ["001", "002"]
        else:
            assert object_dirs == ["001"]
        for obj in object_dirs:
            assert sorted(p.stem for p in (sample / "mask" / obj).iterdir()) == [f.stem for f in frames]
        for frame, line in zip(frames, lines):
            mode, mask = png_array(sample / "mask" / "001" / f"{frame.stem}.png")
            assert mode == "L" and set(np.unique(mask).tolist()) <= {0, 255}
            values = [float(v) for v in line.split(",")]
            box = mask_to_box(mask > 127)
            if family == "A2D_sentences":
                assert box is not None and values == box  # x1,y1,x2,y2 (exclusive max)
            elif box is None:
                assert family == "LaSOT" and values == [0, 0, 0, 0]
            else:
                x, y, w, h = values
                assert [x, y, x + w, y + h] == box
        if family == "LaSOT":
            assert len((sample / "out_of_view.txt").read_text().strip().split(",")) == len(frames)
    assert all(kinds.values()) and plain and marked
    assert (base / "GOT-10k" / "train" / "list.txt").read_text().split() == sorted(
        p.name for p in (base / "GOT-10k" / "train").iterdir() if p.is_dir()
    )


# -- VidSTG ------------------------------------------------------------------------------------------------------


def test_vidstg_layout_and_mp4_decodes(smoke: Path):
    decord = pytest.importorskip("decord")
    root = smoke / "vidstg"
    kinds = set()
    for split, part in (("train", "training"), ("val", "training"), ("test", "validation")):
        files = load(root / "annotations" / f"{split}_files.json")
        annotations = load(root / "annotations" / f"{split}_annotations.json")
        assert isinstance(annotations, list) and {a["vid"] for a in annotations} == set(files)
        for ann in annotations:
            matches = list((root / "vidor" / part).glob(f"*/{ann['vid']}.json"))
            assert len(matches) == 1
            vidor = load(matches[0])
            assert vidor["video_id"] == ann["vid"] and len(vidor["trajectories"]) == ann["frame_count"]
            reader = decord.VideoReader(str(root / "video" / vidor["video_path"]))
            assert len(reader) == ann["frame_count"]
            assert reader[0].shape == (ann["height"], ann["width"], 3)
            tids = {o["tid"] for o in ann["subject/objects"]}
            begin, end = ann["temporal_gt"]["begin_fid"], ann["temporal_gt"]["end_fid"]
            assert 0 <= begin < end <= ann["frame_count"]
            # as in the release: the segment's end_fid is its last frame, temporal_gt's end_fid is exclusive
            assert ann["used_segment"] == {"begin_fid": 0, "end_fid": ann["frame_count"] - 1}
            assert ann["used_relation"]["begin_fid"] == begin and ann["used_relation"]["end_fid"] == end
            for sentence in ann["captions"] + ann["questions"]:
                kinds.add("interrogative" if sentence in ann["questions"] else "declarative")
                assert sentence["target_id"] in tids
                for fid in (begin, end - 1):  # the end is exclusive: the tube covers end - 1
                    assert sentence["target_id"] in {b["tid"] for b in vidor["trajectories"][fid]}
            for question in ann["questions"]:
                assert question["description"].endswith("?")
            for boxes in vidor["trajectories"]:
                for entry in boxes:
                    b = entry["bbox"]
                    assert 0 <= b["xmin"] < b["xmax"] <= ann["width"] and 0 <= b["ymin"] < b["ymax"] <= ann["height"]
    assert kinds == {"declarative", "interrogative"}


# -- VideoGCG ----------------------------------------------------------------------------------------------------


def test_videogcg_layout(smoke: Path):
    root = smoke / "videogcg"
    multi = False
    for split in ("train", "val"):
        captions = sorted((root / f"{split}_captions").glob("*.json"))
        assert captions and {c.stem for c in captions} == {p.name for p in (root / split).iterdir()}
        for path in captions:
            caption = load(path)["caption"]
            sample = root / split / path.stem
            frames = sorted(p.name for p in (sample / "frames").iterdir())
            numbers = [int(Path(f).stem) for f in frames]
            assert numbers != list(range(len(frames)))  # names are original frame indices, not positions
            spans = MARKUP.findall(caption)
            assert spans
            ids = [i for _, group in spans for i in group.split(", ")]
            multi |= any(", " in group for _, group in spans)
            assert sorted(int(i) for i in ids) == sorted(int(p.name) for p in (sample / "masks").iterdir())
            for i in ids:
                folder = sample / "masks" / f"{int(i):03d}"
                assert sorted(p.name for p in folder.iterdir()) == frames
                stack = [png_array(folder / f) for f in frames]
                assert all(mode == "L" for mode, _ in stack)
                assert any((m == 255).any() for _, m in stack)
    assert multi


# -- expressions -------------------------------------------------------------------------------------------------


def _scene(objects: list[ObjectSpec], frames: int = 8) -> SceneSpec:
    background = BackgroundSpec("checker", (90, 90, 90), (100, 100, 100), 6, 3)
    return SceneSpec(64, 96, frames, background, tuple(objects), "motion_distractor")


def _obj(shape: str, motion: str, xs, ys, colour: str = "red", z: int = 0) -> ObjectSpec:
    return ObjectSpec(
        shape=shape,
        colour=colour,
        texture="solid",
        size="medium",
        side=12,
        motion=motion,
        speed="slow" if motion in ("left", "right") else "none",
        z=z,
        xs=tuple(xs),
        ys=tuple(ys),
    )


def test_motion_expression_only_where_motion_separates_identical_objects():
    moving = _obj("square", "left", [70 - 6 * t for t in range(8)], [10] * 8)
    still = _obj("square", "static", [10] * 8, [40] * 8)
    ring = _obj("ring", "static", [50] * 8, [45] * 8, colour="blue")
    world = World(_scene([moving, still, ring]), render(_scene([moving, still, ring])))
    assert world.describe((0,), ("shape",)) is None  # "the square" is ambiguous
    cues = world.describe((0,), ("shape", "motion"))
    assert cues == (("shape", "square"), ("motion", "left"))
    assert world.needs((0,), cues) == ("motion",)
    assert world.describe((1,), ("shape", "motion")) is not None
    # "the static circle" would also cover the ring: a reader may call a ring a circle.
    circle = _obj("circle", "static", [80] * 8, [5] * 8, colour="blue")
    objects = [moving, still, ring, circle]
    world = World(_scene(objects), render(_scene(objects)))
    assert world.describe((3,), ("colour", "shape")) is None
    assert world.describe((2,), ("colour", "shape")) is not None  # "the blue ring" is not a circle


def test_time_cues_follow_visibility():
    late = ObjectSpec(
        shape="star",
        colour="green",
        texture="solid",
        size="medium",
        side=12,
        motion="static",
        speed="none",
        z=0,
        xs=(40,) * 8,
        ys=(20,) * 8,
        appear_at=3,
    )
    early = _obj("star", "static", [10] * 8, [20] * 8, colour="green")
    world = World(_scene([late, early]), render(_scene([late, early])))
    assert world.facts[0].time == "appears_later" and world.facts[1].time == "always"
    assert world.describe((0,), ("shape", "time")) == (("shape", "star"), ("time", "appears_later"))
    assert world.video.mask(0)[:3].sum() == 0
    assert world.video.mask(0)[3:].any(axis=(1, 2)).all()


def test_qa_answers_carry_box_and_seg():
    rng = np.random.Generator(np.random.PCG64(0))
    question, answer = qa_pair(Expression("the square moving left", (0,), "referring"), rng)
    assert "the square moving left" in question and "[BOX] [SEG]" in answer
    question, answer = qa_pair(Expression("which object never moves?", (0, 1), "reasoning"), rng)
    assert question.startswith("Which object never moves?") and "[BOX] [SEG]" in answer


# -- hard cases, figure data, caching, CLI -----------------------------------------------------------------------


def test_every_hard_case_appears_in_mini():
    stats = scene_statistics("mini", 0)
    cfg = SynthConfig.for_profile("mini")
    assert stats["videos"] == cfg.train_videos + cfg.held_out_videos
    missing = [case for case, n in stats["hard_cases"].items() if n == 0]
    assert not missing, stats["hard_cases"]
    assert stats["by_source"]["mevis"]["motion_needed"] > 0
    assert stats["by_source"]["mevis"]["multi_object"] > 0
    assert stats["by_source"]["mevis"]["temporal_expression"] > 0


def test_hard_case_examples_are_figure_ready():
    examples = hard_case_examples("smoke", 0)
    assert [e["case"] for e in examples] == list(HARD_CASES)
    for e in examples:
        frames, target = e["frames"], e["target"]
        assert frames.dtype == np.uint8 and frames.shape[:3] == target.shape
        assert target.any() and e["expression"] and e["why"]
        assert not (target & e["others"]).any()
        if e["case"] in ("late_appearance", "exit_reenter", "leaves"):
            assert not e["target_visible"].all()


def test_ensure_generated_reuses_a_complete_folder_and_replaces_a_partial_one():
    from sparrow.paths import data_dir

    target = data_dir("smoke", 3)
    target.mkdir(parents=True)
    (target / "half-written.jpg").write_bytes(b"")  # an interrupted run without a manifest
    path = ensure_generated("smoke", 3)
    assert path == target and is_complete(path, "smoke", 3) and not (path / "half-written.jpg").exists()
    stamp = (path / "manifest.json").stat().st_mtime_ns
    assert ensure_generated("smoke", 3) == path
    assert (path / "manifest.json").stat().st_mtime_ns == stamp
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temporary folders left


def test_cli_generates_into_an_empty_folder(tmp_path: Path, capsys):
    assert main_synth(["--profile", "smoke", "--seed", "2", "--out", str(tmp_path / "cli")]) == 0
    assert "wrote" in capsys.readouterr().out
    assert is_complete(tmp_path / "cli", "smoke", 2)
    with pytest.raises(FileExistsError):
        generate("smoke", 2, tmp_path / "cli")


_DIRECTION_WORDS = {
    "left": (
        "moving left",
        "moving to the left",
        "heading left",
        "going left",
        "moving quickly left",
        "moving slowly left",
        "moving quickly to the left",
        "moving slowly to the left",
    ),
    "right": (
        "moving right",
        "moving to the right",
        "heading right",
        "going right",
        "moving quickly right",
        "moving slowly right",
        "moving quickly to the right",
        "moving slowly to the right",
    ),
}


def test_direction_words_agree_with_the_written_masks(smoke: Path):
    """Read back from disk: a referent said to move left (right) has its visible mask drift left (right)."""
    checked = 0
    for split in ("train", "valid_u", "valid"):
        root = smoke / "mevis" / split
        masks = load(root / "mask_dict.json")
        for video in load(root / "meta_expressions.json")["videos"].values():
            for exp in video["expressions"].values():
                for direction, phrases in _DIRECTION_WORDS.items():
                    if not any(p in exp["exp"] for p in phrases):
                        continue
                    for anno in exp["anno_id"]:
                        xs = [float(np.nonzero(decode_rle(r))[1].mean()) for r in masks[str(anno)] if r is not None]
                        assert len(xs) >= 2
                        assert (xs[-1] < xs[0]) if direction == "left" else (xs[-1] > xs[0]), exp["exp"]
                        checked += 1
    assert checked >= 3
