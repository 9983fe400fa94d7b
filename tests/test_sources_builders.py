"""Tiny on-disk fixtures in each real source layout (docs/data-formats.md §9), shared by the loader and curation tests.

Images are 32 x 48 (H x W) unless stated, so that a transposed size would be caught. Nothing here is a test.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

H, W = 32, 48


def rect(y0: int, y1: int, x0: int, x1: int, shape: tuple[int, int] = (H, W)) -> np.ndarray:
    m = np.zeros(shape, dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


def rle(mask: np.ndarray) -> dict:
    r = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(r["size"][0]), int(r["size"][1])], "counts": r["counts"].decode("ascii")}


def write_json(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return path


def frame(seed: int, shape: tuple[int, int] = (H, W)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 255, size=(*shape, 3), dtype=np.uint8)


def write_frames(folder: Path, names: list[str], ext: str = "jpg", shape: tuple[int, int] = (H, W)) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, name in enumerate(names):
        path = folder / f"{name}.{ext}"
        Image.fromarray(frame(i, shape)).save(path)
        paths.append(path)
    return paths


def palette_png(path: Path, index: np.ndarray) -> None:
    """A mode-P annotation whose palette makes convert('L') differ from the raw index."""
    img = Image.fromarray(index.astype(np.uint8), mode="P")
    palette = [0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0] + [0] * (256 * 3 - 12)
    img.putpalette(palette)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def binary_png(path: Path, mask: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask.astype(np.uint8) * 255, mode="L").save(path)


# -- MeViS -------------------------------------------------------------------------------------------------------

MEVIS_FRAMES = ["00000", "00001", "00002", "00003"]


def mevis_masks() -> dict[str, list]:
    """anno 51: a box moving right; anno 52: absent on frame 2 (null)."""
    a = [rle(rect(2, 10, 2 + 4 * t, 12 + 4 * t)) for t in range(4)]
    b = [rle(rect(20, 30, 30, 40)), rle(rect(20, 30, 30, 40)), None, rle(rect(18, 28, 30, 44))]
    return {"51": a, "52": b}


def make_mevis(root: Path, valid_masks: bool = False) -> Path:
    train = root / "train"
    write_frames(train / "JPEGImages" / "a1b2c3d4e5f6", MEVIS_FRAMES)
    write_frames(train / "JPEGImages" / "0f0f0f0f0f0f", MEVIS_FRAMES[:3])
    write_json(train / "meta_expressions.json", {"videos": {
        "a1b2c3d4e5f6": {"vid_id": 1, "frames": list(reversed(MEVIS_FRAMES)), "expressions": {
            "0": {"exp": "two boxes moving", "obj_id": [0, 1], "anno_id": [51, 52]},
            "1": {"exp": "The  box on the RIGHT", "obj_id": [1], "anno_id": [52]},
            "2": {"exp": "the box on the right", "obj_id": [1], "anno_id": [52]},
        }},
        "0f0f0f0f0f0f": {"frames": MEVIS_FRAMES[:3], "expressions": {
            "0": {"exp": "a still box", "obj_id": [0], "anno_id": [60]},
        }},
    }})
    masks = mevis_masks()
    masks["60"] = [rle(rect(5, 15, 5, 15))] * 3
    write_json(train / "mask_dict.json", masks)
    valid = root / "valid"
    write_frames(valid / "JPEGImages" / "cccccccccccc", MEVIS_FRAMES)
    write_json(valid / "meta_expressions.json", {"videos": {"cccccccccccc": {"frames": MEVIS_FRAMES, "expressions": {
        "0": {"exp": "the moving box", "obj_id": [0], "anno_id": [70]}}}}})
    if valid_masks:
        write_json(valid / "mask_dict.json", {"70": [rle(rect(1, 5, 1, 5))] * 4})
    return root


# -- Ref-YouTube-VOS ---------------------------------------------------------------------------------------------

YTVOS_FRAMES = ["00000", "00005", "00010", "00015"]


def make_ytvos(root: Path) -> Path:
    vid = "0f1e2d3c4b"
    write_frames(root / "train" / "JPEGImages" / vid, YTVOS_FRAMES)
    for t, name in enumerate(YTVOS_FRAMES):
        index = np.zeros((H, W), np.uint8)
        index[rect(0, 8, 0, 8 + 4 * t)] = 1
        if t != 1:
            index[rect(16, 30, 20, 40)] = 2
        palette_png(root / "train" / "Annotations" / vid / f"{name}.png", index)
    write_json(root / "train" / "meta.json", {"videos": {vid: {"objects": {
        "1": {"category": "dog", "frames": YTVOS_FRAMES}, "2": {"category": "person", "frames": YTVOS_FRAMES}}}}})
    write_json(root / "meta_expressions" / "train" / "meta_expressions.json", {"videos": {vid: {
        "frames": YTVOS_FRAMES, "expressions": {
            "0": {"exp": "a brown dog", "obj_id": "1"},
            "1": {"exp": "a person in a red coat", "obj_id": "2"},
        }}}})
    write_frames(root / "valid" / "JPEGImages" / "validvid01", YTVOS_FRAMES)
    write_json(root / "meta_expressions" / "valid" / "meta_expressions.json", {"videos": {
        "validvid01": {"frames": YTVOS_FRAMES, "expressions": {"0": {"exp": "a cat"}}},
        "testvid001": {"frames": YTVOS_FRAMES, "expressions": {"0": {"exp": "a horse"}}},
    }})
    write_json(root / "meta_expressions" / "test" / "meta_expressions.json", {"videos": {
        "testvid001": {"frames": YTVOS_FRAMES, "expressions": {"0": {"exp": "a horse"}}}}})
    return root


# -- Ref-DAVIS17 -------------------------------------------------------------------------------------------------

DAVIS_FRAMES = ["00000", "00001", "00002", "00003"]


def _davis_annotations(folder: Path) -> None:
    for t, name in enumerate(DAVIS_FRAMES):
        index = np.zeros((H, W), np.uint8)
        index[rect(2, 12, 2 + t, 14 + t)] = 1
        index[rect(20, 30, 30, 44)] = 2
        index[0, :] = 255  # DAVIS void
        palette_png(folder / f"{name}.png", index)


def make_davis_converted(root: Path) -> Path:
    for split, vid in (("train", "bear"), ("valid", "toy-boat")):
        write_frames(root / split / "JPEGImages" / vid, DAVIS_FRAMES)
        _davis_annotations(root / split / "Annotations" / vid)
        write_json(root / split / "meta.json", {"videos": {vid: {"objects": {"1": {"category": "boat"},
                                                                              "2": {"category": "person"}}}}})
        expressions = {}
        for k, obj in enumerate(("1", "2")):
            for slot in range(4):
                expressions[str(4 * k + slot)] = {"exp": f"object {obj} by slot {slot}", "obj_id": obj}
        write_json(root / "meta_expressions" / split / "meta_expressions.json",
                   {"videos": {vid: {"frames": DAVIS_FRAMES, "expressions": expressions}}})
    return root


def make_davis_raw(root: Path) -> Path:
    davis = root / "DAVIS"
    for vid in ("classic-car", "dogs-scale"):
        write_frames(davis / "JPEGImages" / "480p" / vid, DAVIS_FRAMES)
        _davis_annotations(davis / "Annotations_unsupervised" / "480p" / vid)
    (davis / "ImageSets" / "2017").mkdir(parents=True)
    (davis / "ImageSets" / "2017" / "train.txt").write_text("dogs-scale\n")
    (davis / "ImageSets" / "2017" / "val.txt").write_text("classic-car\n")
    write_json(davis / "davis_semantics.json", {"classic-car": {"1": "car", "2": "person"},
                                                "dogs-scale": {"1": "dog", "2": "scale"}})
    text = root / "davis_text_annotations"
    text.mkdir()
    lines = {
        "Davis17_annot1.txt": ('clasic-car 1 "a silver car"', 'clasic-car 2 "a man"', 'dog-scale 1 "a dog"',
                               'dog-scale 2 "a scale"'),
        "Davis17_annot1_full_video.txt": ('clasic-car 1 "a silver car driving"', 'clasic-car 2 "a man walking"',
                                          'dog-scale 1 "a dog sitting"', 'dog-scale 2 "a scale"'),
        "Davis17_annot2.txt": ('clasic-car 1 "a café racer"', 'clasic-car 2 "a man"', 'dog-scale 1 "a dog"',
                               'dog-scale 2 "a scale"'),
        "Davis17_annot2_full_video.txt": ('clasic-car 1 "the café car"', 'clasic-car 2 "a walking man"',
                                          'dog-scale 1 "the dog"', 'dog-scale 2 "the scale"'),
    }
    for name, rows in lines.items():
        encoding = "latin-1" if "annot2" in name else "utf-8"
        (text / name).write_bytes(("\n".join(rows) + "\n").encode(encoding))
    return root


# -- ReVOS -------------------------------------------------------------------------------------------------------


def make_revos(root: Path) -> Path:
    key = "MOSE/abcd1234"
    write_frames(root / "JPEGImages" / key, MEVIS_FRAMES)
    left, right = rect(2, 10, 2, 10), rect(20, 30, 30, 40)
    uncompressed = mask_utils.frPyObjects(
        {"size": [H, W], "counts": [int(v) for v in _uncompressed_counts(left)]}, H, W)
    assert uncompressed  # sanity: pycocotools accepts the list form
    write_json(root / "mask_dict.json", {
        "1207": [[rle(left), rle(right)], rle(left), None, {"size": [H, W], "counts": _uncompressed_counts(left)}],
        "1208": [rle(right)] * 4,
    })
    write_json(root / "meta_expressions_train_.json", {"videos": {key: {"frames": MEVIS_FRAMES, "expressions": {
        "0": {"exp": "Which object is most likely to move?", "obj_id": [3], "anno_id": [1207], "type_id": 1},
        "1": {"exp": "the box on the right", "obj_id": [4], "anno_id": [1208], "type_id": 0},
        "2": {"exp": "the unicorn", "obj_id": [], "anno_id": [], "type_id": 0},
    }}}})
    return root


def _uncompressed_counts(mask: np.ndarray) -> list[int]:
    flat = mask.astype(np.uint8).flatten(order="F")
    counts, current, run = [], 0, 0
    for v in flat:
        if v == current:
            run += 1
        else:
            counts.append(run)
            current, run = v, 1
    counts.append(run)
    return counts


# -- SPARROW tracking layout ---------------------------------------------------------------------------------------


def make_tracking_sample(folder: Path, boxes_lines: list[str], caption: str, masks: dict[str, list[np.ndarray]],
                         mask_style: str = "folder", n: int = 8) -> Path:
    names = [f"{i + 1:08d}" for i in range(n)]
    write_frames(folder / "img", names)
    (folder / "mask").mkdir(parents=True, exist_ok=True)
    for obj, per_frame in masks.items():
        for name, m in zip(names, per_frame):
            if mask_style == "folder":
                binary_png(folder / "mask" / f"{int(obj):03d}" / f"{name}.png", m)
            else:  # mask/S_k.png
                binary_png(folder / "mask" / f"{name}_{obj}.png", m)
    (folder / "groundtruth.txt").write_text("\n".join(boxes_lines) + "\n")
    (folder / "nlp.txt").write_text(caption)
    return folder


def make_tracking(root: Path, n: int = 8) -> Path:
    vot = root / "VOT_dataset"
    moving = [rect(4, 14, 4 + t, 16 + t) for t in range(n)]
    # GOT-10k: xywh, scene level, mask folders; a NaN line and a short line
    lines = [f"{4 + t},4,12,10" for t in range(n)]
    lines[5] = "nan,nan,nan,nan"
    lines[6] = "10 4"
    lines.insert(3, "")
    make_tracking_sample(vot / "GOT-10k" / "train" / "GOT-10k_Train_000001" / "00", lines,
                         "a red box\nmoving right\n", {"1": moving}, n=n)
    # A2D: xyxy, markup with two phrases, S_k.png masks
    still = [rect(20, 30, 30, 40)] * n
    a2d_lines = [f"{4 + t} 4 {16 + t} 14" for t in range(n)]
    make_tracking_sample(vot / "A2D_sentences" / "Images" / "clip01", a2d_lines,
                         "[a red box](1) passes [a blue box](2, 3)", {"1": moving, "2": still}, mask_style="flat", n=n)
    # HC-STVG val: xyxy, single phrase markup
    make_tracking_sample(vot / "HC-STVG" / "Val_Images" / "person01", a2d_lines, "[the man](1) walking left",
                         {"1": moving}, n=n)
    return root


# -- mp4 sources -------------------------------------------------------------------------------------------------


def write_mp4(path: Path, n: int, shape: tuple[int, int], fps: int = 10) -> None:
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width = shape
        stream.pix_fmt = "yuv420p"
        for t in range(n):
            img = np.zeros((*shape, 3), np.uint8)
            img[:, (4 * t) % shape[1]] = 255
            for packet in stream.encode(__import__("av").VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def make_vidstg(root: Path) -> Path:
    vid = "1234567890"
    n, shape = 10, (32, 48)
    write_mp4(root / "video" / "0000" / f"{vid}.mp4", n, shape)
    trajectories = [[{"tid": 0, "bbox": {"xmin": 2 + t, "ymin": 2, "xmax": 12 + t, "ymax": 12}, "generated": 0,
                      "tracker": 0}, {"tid": 1, "bbox": {"xmin": 30, "ymin": 20, "xmax": 40, "ymax": 30},
                                      "generated": 0, "tracker": 0}] for t in range(n)]
    write_json(root / "vidor_annotations" / "training" / "0000" / f"{vid}.json", {
        "video_id": vid, "video_path": f"0000/{vid}.mp4", "frame_count": n, "fps": 10, "width": 48, "height": 32,
        "subject/objects": [{"tid": 0, "category": "child"}, {"tid": 1, "category": "ball"}],
        "trajectories": trajectories, "relation_instances": []})
    write_json(root / "vidstg_annotations" / "train_annotations.json", [{
        "vid": vid, "frame_count": n, "fps": 10, "width": 48, "height": 32,
        "subject/objects": [{"tid": 0, "category": "child"}, {"tid": 1, "category": "ball"}],
        "used_segment": {"begin_fid": 2, "end_fid": 9},
        "used_relation": {"subject_tid": 0, "object_tid": 1, "predicate": "kick", "begin_fid": 3, "end_fid": 6},
        "temporal_gt": {"begin_fid": 3, "end_fid": 6},
        "captions": [{"description": "a child kicks a ball", "type": "child", "target_id": 0}],
        "questions": [{"description": "what does the child kick?", "type": "ball", "target_id": 1}],
    }])
    write_json(root / "vidstg_annotations" / "train_files.json", [vid])
    return root


def make_hcstvg(root: Path) -> Path:
    n, shape = 12, (36, 64)  # img_size is [H, W]
    write_mp4(root / "Video" / "sub1" / "77_ExAmPlE0001.mp4", n, shape)
    write_json(root / "anno_v2" / "train_v2.json", {"77_ExAmPlE0001.mp4": {
        "img_num": n, "img_size": [36, 64], "st_frame": 3, "ed_frame": 6,
        "bbox": [[10, 4, 20, 30], [11, 4, 20, 30], [12, 4, 20, 30], [13, 4, 20, 30]],
        "English": "The man in a grey coat walks to the door."}})
    return root


# -- VideoGLaMM GCG ----------------------------------------------------------------------------------------------


def make_videogcg(root: Path) -> Path:
    part = root / "vidstg_gcg"
    names = ["000000", "000003", "000006", "000009"]
    sample = part / "train" / "2401075277"
    write_frames(sample / "frames", names, ext="png")
    for t, name in enumerate(names):
        binary_png(sample / "masks" / "000" / f"{name}.png", rect(2, 12, 2 + t, 12 + t))
        binary_png(sample / "masks" / "001" / f"{name}.png", rect(20, 30, 30, 40) if t != 2 else np.zeros((H, W), bool))
    write_json(part / "train_captions" / "2401075277.json",
               {"caption": "there is a [white rabbit](0, 1) next to an [adult](1)"})
    # mevis_gcg reads MeViS next to it
    make_mevis(root / "mevis")
    write_json(root / "mevis_gcg" / "train" / "a1b2c3d4e5f6.json",
               {"caption": "[two boxes](0, 1) move while [the right box](1) waits"})
    # video_gcg instruction data (YTVIS frames)
    write_frames(root / "ytvis" / "vos" / "train" / "JPEGImages" / "0a1b2c", ["00000", "00005"])
    write_json(root / "video_gcg" / "instruction_data" / "train.json", {
        "videos": [
            {"id": 7, "file_names": ["0a1b2c/00000.jpg", "0a1b2c/00005.jpg"], "width": W, "height": H, "length": 2,
             "dense_cap": {"caption": "a dog chases a ball", "token_pos": [1, 4, 1], "mask_id": [101, 102, 103],
                           "v_id2o_id": {}}, "metadata": {"dataset": "yt19"}},
            {"id": 8, "file_names": ["0a1b2c/00000.jpg"], "width": W, "height": H, "length": 1, "dense_cap": None},
        ],
        "annotations": [
            {"id": 101, "video_id": 7, "segmentations": [rle(rect(1, 9, 1, 9)), None]},
            {"id": 102, "video_id": 7, "segmentations": [rle(rect(20, 25, 20, 25)), rle(rect(20, 26, 22, 27))]},
            {"id": 103, "video_id": 7, "segmentations": [
                {"size": [H, W], "counts": _uncompressed_counts(rect(10, 12, 10, 12))}, None]},
        ]})
    return root
