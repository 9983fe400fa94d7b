"""HC-STVG v2: ``anno_v2/{train_v2,val_v2}.json`` keyed by ``<name>.mp4`` and the clips under ``Video/<subdir>/``.

Facts honoured (docs/data-formats.md §4.2): ``img_size`` is ``[H, W]``; ``bbox`` holds one ``[x, y, w, h]`` per frame from
the **1-based** ``st_frame`` for ``len(bbox)`` frames (the tube ends, exclusive, at ``st_frame + len(bbox)``);
clips last 20 s, so fps = ``img_num / 20``; one person per clip (object ``"1"``), one declarative sentence.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from sparrow.data.records import ExpressionRecord, ObjectRecord, VideoRecord
from sparrow.data.sources.base import MALFORMED, ItemError, LoadContext, Provenance, VideoBundle, register, xywh_to_xyxy
from sparrow.data.sources.video_frames import extract_frames, require_frames, span_positions

SPLITS = ("train", "val")
ANNOTATION_NAMES = {"train": ("train_v2.json",), "val": ("val_v2.json", "val_hc_stvg_v2.json")}
CLIP_SECONDS = 20.0
TARGET = "1"


def annotation_file(root: Path, split: str) -> Path | None:
    for folder in (root / "anno_v2", root / "annotations", root):
        for name in ANNOTATION_NAMES[split]:
            if (folder / name).is_file():
                return folder / name
    return None


def index_videos(root: Path) -> dict[str, Path]:
    """``<name>.mp4 -> path`` over the video folder (clips sit in sub-folders)."""
    index: dict[str, Path] = {}
    for folder in ("Video", "video", "videos"):
        if (root / folder).is_dir():
            for dirpath, _, files in os.walk(root / folder):
                for name in files:
                    if name.endswith(".mp4"):
                        index.setdefault(name, Path(dirpath) / name)
    return index


def load_clip(
    ctx: LoadContext, split: str, ann_path: Path, name: str, entry: dict, videos: dict[str, Path]
) -> VideoBundle:
    try:
        height, width = (int(v) for v in entry["img_size"])
        st_frame = int(entry["st_frame"])
        tube = [xywh_to_xyxy(b) for b in entry["bbox"]]
        text = entry["English"]
        img_num = int(entry.get("img_num", 0))
    except (KeyError, TypeError, ValueError) as exc:
        raise ItemError(ann_path, f"clip {name}: malformed entry ({exc!r})") from None
    if st_frame < 1:
        raise ItemError(ann_path, f"clip {name}: st_frame {st_frame} is not 1-based")
    key = name[:-4] if name.endswith(".mp4") else name
    mp4 = videos.get(name if name.endswith(".mp4") else f"{name}.mp4")
    if mp4 is None:
        raise ItemError(ctx.root / "Video", f"no video file {name}")
    fps_native = img_num / CLIP_SECONDS if img_num else 0.0
    frames = extract_frames(mp4, ctx.frames_for(key), ctx.extraction, fps_hint=fps_native)
    if (frames.height, frames.width) != (height, width):
        raise ItemError(
            mp4, f"decoded frames are {frames.width}x{frames.height}, img_size says {width}x{height} ([H, W])"
        )
    first = st_frame - 1  # 0-based decode index of the tube's first box
    require_frames(frames, mp4, first + len(tube), f"clip {name} (tube frames {st_frame}..{st_frame + len(tube) - 1})")
    by_index = {first + n: box for n, box in enumerate(tube)}
    boxes = [by_index.get(i) for i in frames.indices]
    span = span_positions(frames.indices, first, first + len(tube))
    if span is None:
        last = st_frame + len(tube) - 1
        raise ItemError(ann_path, f"clip {name}: tube frames {st_frame}..{last} (1-based) not in the video")
    video_id = f"{ctx.source}/{key}"
    obj = ObjectRecord(video_id, TARGET, "person", [None] * len(boxes), boxes)
    expression = ExpressionRecord(f"{video_id}/0", video_id, text, [TARGET], "declarative", span)
    fps = (fps_native or frames.native_fps) / frames.stride
    names = [f"{i:06d}" for i in frames.indices]
    video = VideoRecord(video_id, ctx.source, split, [str(p) for p in frames.paths], names, height, width, fps)
    return VideoBundle(video, [obj], [expression], Provenance(str(ann_path), None, str(ann_path)))


@register("hcstvg", SPLITS, "HC-STVG v2: anno_v2/{train_v2,val_v2}.json keyed by <name>.mp4 + Video/ clips")
def load_hcstvg(ctx: LoadContext) -> Iterator[VideoBundle]:
    found = ctx.annotation_files(
        SPLITS, annotation_file, "no HC-STVG v2 annotations (anno_v2/train_v2.json, anno_v2/val_v2.json)", "hcstvg v2"
    )
    videos = index_videos(ctx.root)
    for split, ann_path, clips in ctx.split_annotations(found, dict, "expected a dict keyed by <name>.mp4"):
        for name, entry in clips.items():
            try:
                if not isinstance(entry, dict):
                    raise ItemError(ann_path, f"clip {name}: entry is not a dict")
                yield load_clip(ctx, split, ann_path, name, entry, videos)
            except MALFORMED as exc:
                ctx.skip(exc, split=split, item=f"{ctx.source}/{name}", file=ann_path)
