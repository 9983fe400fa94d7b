"""A tiny curated dataset of moving shapes for the TSF tests (independent of the SPARROW-Mini generator).

Other ``test_tsf*`` files import :func:`write_toy_curated` from here; the tests below check that the folder is a
valid curated dataset whose masks and boxes agree with the pixels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from sparrow.data.boxes import mask_to_box
from sparrow.data.records import ExpressionRecord, ObjectRecord, VideoRecord
from sparrow.data.rle import encode_rle
from sparrow.storage import atomic_write_json, write_jsonl

COLOURS = {"red": (220, 40, 40), "blue": (40, 80, 230), "yellow": (235, 210, 40), "green": (40, 180, 70)}


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    base = rng.integers(60, 140, size=3)
    noise = rng.integers(-25, 25, size=(height // 4 + 1, width // 4 + 1, 1))
    tiles = np.kron(noise, np.ones((4, 4, 1), dtype=np.int64))[:height, :width]
    return np.clip(base + tiles, 0, 255).astype(np.uint8)


def _shape_mask(shape: str, side: int) -> np.ndarray:
    if shape == "square":
        return np.ones((side, side), dtype=bool)
    yy, xx = np.mgrid[0:side, 0:side]
    r = (side - 1) / 2
    return (yy - r) ** 2 + (xx - r) ** 2 <= r ** 2 + 0.5


def write_toy_curated(root: Path, videos: int = 4, frames: int = 8, height: int = 48, width: int = 64,
                      seed: int = 0, splits: tuple[str, ...] = ("train", "valid"), side: int = 12,
                      objects_per_video: int = 2, short_video_frames: int | None = None,
                      ghost: bool = False, meta: dict | None = None) -> Path:
    """Write ``videos`` videos per split: objects moving linearly, one referring expression per object.

    Object k of a video is a ``COLOURS``-coloured square or circle with a constant velocity; the expression is
    "the <colour> <shape>". With ``short_video_frames`` the last video of each split has that many frames; with
    ``ghost`` the first video of each split also has an object that is never visible, referred to as "the ghost".
    ``meta`` is merged into ``meta.json``.
    """
    rng = np.random.default_rng(seed)
    root = Path(root)
    video_rows, object_rows, expression_rows = [], [], []
    names = list(COLOURS)
    for split in splits:
        for v in range(videos):
            video_id = f"toy/{split}{v:02d}"
            total = short_video_frames if (short_video_frames and v == videos - 1) else frames
            background = _background(rng, height, width)
            specs = []
            for k in range(objects_per_video):
                colour = names[(v + k) % len(names)]
                shape = ("square", "circle")[(v + k) % 2]
                x0 = float(rng.integers(0, width - side))
                y0 = float(rng.integers(0, height - side))
                vx, vy = (float(rng.uniform(-2.5, 2.5)) for _ in range(2))
                specs.append((colour, shape, x0, y0, vx, vy))
            frame_dir = root / "frames" / split / f"{v:02d}"
            frame_dir.mkdir(parents=True, exist_ok=True)
            masks = [[None] * total for _ in specs]
            boxes = [[None] * total for _ in specs]
            paths, names_ = [], []
            for t in range(total):
                image = background.copy()
                for k, (colour, shape, x0, y0, vx, vy) in enumerate(specs):
                    x = int(round(np.clip(x0 + vx * t, 0, width - side)))
                    y = int(round(np.clip(y0 + vy * t, 0, height - side)))
                    sprite = _shape_mask(shape, side)
                    full = np.zeros((height, width), dtype=bool)
                    full[y:y + side, x:x + side] = sprite
                    image[full] = COLOURS[colour]
                    masks[k][t] = full
                # later objects are drawn on top: visible masks exclude what they cover
                for k in range(len(specs)):
                    visible = masks[k][t].copy()
                    for j in range(k + 1, len(specs)):
                        visible &= ~masks[j][t]
                    masks[k][t] = visible
                    boxes[k][t] = mask_to_box(visible)
                name = f"{t:05d}"
                Image.fromarray(image).save(frame_dir / f"{name}.png")
                paths.append(str((frame_dir / f"{name}.png").relative_to(root)))
                names_.append(name)
            video_rows.append(VideoRecord(video_id, "toy", split, paths, names_, height, width, 6.0).to_json())
            for k, (colour, shape, *_rest) in enumerate(specs):
                object_rows.append(ObjectRecord(
                    video_id, str(k), shape,
                    [encode_rle(m) if m.any() else None for m in masks[k]],
                    [b for b in boxes[k]]).to_json())
                expression_rows.append(ExpressionRecord(
                    f"{split}{v:02d}-{k}", video_id, f"the {colour} {shape}", [str(k)], "referring").to_json())
            if ghost and v == 0:
                object_rows.append(ObjectRecord(video_id, "ghost", "ghost", [None] * total, [None] * total).to_json())
                expression_rows.append(ExpressionRecord(
                    f"{split}{v:02d}-ghost", video_id, "the ghost", ["ghost"], "referring").to_json())
    write_jsonl(root / "videos.jsonl", video_rows)
    write_jsonl(root / "objects.jsonl", object_rows)
    write_jsonl(root / "expressions.jsonl", expression_rows)
    write_jsonl(root / "qa.jsonl", [])
    atomic_write_json(root / "meta.json", {"sources": ["toy"], "generator": "tests/test_tsf_toydata.py", **(meta or {})})
    return root


def test_toy_dataset_is_a_consistent_curated_set(tmp_path):
    from sparrow.data.curated import CuratedDataset

    root = write_toy_curated(tmp_path / "toy", videos=2, frames=5)
    dataset = CuratedDataset(root)
    videos = list(dataset.iter_videos(split="valid"))
    assert [v.video_id for v in videos] == ["toy/valid00", "toy/valid01"]
    frames = dataset.load_frames("toy/valid00")
    assert frames.shape == (5, 48, 64, 3)
    expression = dataset.expressions("toy/valid00")[0]
    colour = expression.text.split()[1]
    masks = dataset.expression_masks(expression)
    obj = dataset.objects("toy/valid00")[expression.object_ids[0]]
    for t in range(5):
        if masks[t].any():
            assert (frames[t][masks[t]] == np.array(COLOURS[colour], dtype=np.uint8)).all()
            assert obj.boxes[t] == mask_to_box(masks[t])
