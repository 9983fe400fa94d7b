"""VidSTG (CVPR 2020) raw annotations with VidOR trajectories and mp4 videos.

Layout (VideoGLaMM's ``video_dataset/vidstg`` or the raw repositories): ``{split}_annotations.json`` (and
``{split}_files.json``) in ``vidstg_annotations/``, ``annotations/`` or the root; VidOR per-video JSON under
``vidor_annotations/`` or ``annotation/`` as ``{training,validation}/<folder>/<vid>.json``; mp4s under ``video/``
or ``videos/`` at the VidOR ``video_path``.

Facts honoured (docs/data-formats.md §4.1): VidSTG train/val take their trajectories from VidOR *training*, VidSTG test
from VidOR *validation*; VidOR ``trajectories`` is a list over frames of ``[{tid, bbox: {xmin, ymin, xmax,
ymax}}]`` (xyxy, used as is); ``captions`` are declarative and ``questions`` interrogative sentences whose target
is the tube of ``target_id``; frame ids are 0-based; ``temporal_gt.end_fid`` is taken as exclusive (TubeDETR),
becoming ``frame_span``, while ``used_segment.end_fid`` is the segment's *last* frame (inclusive): the release
gives ``frame_count - 1`` for a segment that runs to the end of the video, where a ``temporal_gt`` running to the
end has ``end_fid == frame_count``, and consecutive segments share their boundary frame. Annotations of the same video and ``used_segment`` are merged into one curated video
(``vidstg/<vid>_<begin>_<end>``); only the frames of ``used_segment`` are extracted. Boxes only: masks are None.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sparrow.data.records import ExpressionRecord, ObjectRecord, VideoRecord
from sparrow.data.sources.base import (
    MALFORMED,
    ItemError,
    LoadContext,
    Provenance,
    VideoBundle,
    read_release_json,
    register,
)
from sparrow.data.sources.video_frames import extract_frames, require_frames, span_positions

SPLITS = ("train", "val", "test")
VIDOR_PART = {"train": "training", "val": "training", "test": "validation"}


def _first_dir(root: Path, names: tuple[str, ...]) -> Path | None:
    return next((root / n for n in names if (root / n).is_dir()), None)


def annotation_file(root: Path, split: str) -> Path | None:
    for folder in (root / "vidstg_annotations", root / "annotations", root / "VidSTG-Dataset" / "annotations", root):
        path = folder / f"{split}_annotations.json"
        if path.is_file():
            return path
    return None


class VidorIndex:
    """``vid -> VidOR JSON path`` for one part (training / validation), built by listing its folders once."""

    def __init__(self, root: Path):
        self.base = _first_dir(root, ("vidor_annotations", "annotation", "vidor_annotation", "vidor"))
        self._parts: dict[str, dict[str, Path]] = {}

    def find(self, part: str, vid: str) -> Path:
        if part not in self._parts:
            index: dict[str, Path] = {}
            folder = None if self.base is None else self.base / part
            if folder is not None and not folder.is_dir() and (self.base / "annotation" / part).is_dir():
                folder = self.base / "annotation" / part
            if folder is not None and folder.is_dir():
                for dirpath, _, files in os.walk(folder):
                    for name in files:
                        if name.endswith(".json"):
                            index[name[:-5]] = Path(dirpath) / name
            self._parts[part] = index
        try:
            return self._parts[part][vid]
        except KeyError:
            where = "no VidOR annotation folder" if self.base is None else f"{self.base / part}"
            raise ItemError(where, f"no VidOR annotation for video {vid}") from None


def _video_path(root: Path, rel: str) -> Path:
    for folder in ("video", "videos", "vidor/video", "VidOR/video"):
        path = root / folder / rel
        if path.is_file():
            return path
    return root / "video" / rel


def _bbox(entry: dict, where: Path) -> list[float]:
    try:
        b = entry["bbox"]
        return [float(b["xmin"]), float(b["ymin"]), float(b["xmax"]), float(b["ymax"])]
    except (KeyError, TypeError, ValueError):
        raise ItemError(where, f"malformed trajectory box {str(entry)[:80]}") from None


def load_segment(
    ctx: LoadContext, split: str, ann_path: Path, entries: list[tuple[int, dict]], vidor: VidorIndex
) -> VideoBundle:
    first = entries[0][1]
    vid = str(first["vid"])
    seg = first.get("used_segment") or {}
    begin, end = int(seg.get("begin_fid", 0)), seg.get("end_fid")
    vidor_path = vidor.find(VIDOR_PART[split], vid)
    vidor_ann = read_release_json(vidor_path)
    if not isinstance(vidor_ann, dict) or not isinstance(vidor_ann.get("trajectories"), list):
        raise ItemError(vidor_path, "no 'trajectories' list")
    key = f"{vid}_{begin}_{end}"
    video_id = f"{ctx.source}/{key}"
    mp4 = _video_path(ctx.root, str(vidor_ann.get("video_path", f"{vid}.mp4")))
    stop = None if end is None else int(end) + 1
    frames = extract_frames(
        mp4,
        ctx.frames_for(key),
        ctx.extraction,
        begin,
        stop,
        fps_hint=float(first.get("fps") or vidor_ann.get("fps") or 0.0),
    )
    frame_count = first.get("frame_count")
    needed = [n for n in (stop, None if frame_count is None else int(frame_count)) if n is not None]
    if needed:
        require_frames(frames, mp4, min(needed), f"annotation {entries[0][0]} (used_segment {seg})")
    width, height = int(first.get("width", frames.width)), int(first.get("height", frames.height))
    if (frames.height, frames.width) != (height, width):
        raise ItemError(mp4, f"decoded frames are {frames.width}x{frames.height}, annotation says {width}x{height}")

    categories: dict[str, str] = {}
    for _, entry in entries:
        for obj in entry.get("subject/objects", []):
            categories.setdefault(str(obj["tid"]), str(obj.get("category", "")))
    boxes: dict[str, list] = {tid: [] for tid in categories}
    trajectories = vidor_ann["trajectories"]
    for fid in frames.indices:
        here = {}
        if fid < len(trajectories):
            for item in trajectories[fid] or []:
                here[str(item.get("tid"))] = _bbox(item, vidor_path)
        for tid in categories:
            boxes[tid].append(here.get(tid))
    no_masks = [None] * len(frames.indices)
    objects = [ObjectRecord(video_id, tid, cat, list(no_masks), boxes[tid]) for tid, cat in categories.items()]

    expressions = []
    for index, entry in entries:
        gt = entry.get("temporal_gt") or {}
        span = None
        if "begin_fid" in gt and "end_fid" in gt:
            span = span_positions(frames.indices, int(gt["begin_fid"]), int(gt["end_fid"]))
            if span is None:
                raise ItemError(ann_path, f"annotation {index}: temporal_gt {gt} has no extracted frame")
        for kind, field_name, tag in (("declarative", "captions", "c"), ("interrogative", "questions", "q")):
            for n, sentence in enumerate(entry.get(field_name) or []):
                try:
                    text = sentence["description"]
                    target = str(sentence["target_id"])
                except (KeyError, TypeError):
                    raise ItemError(ann_path, f"annotation {index}: malformed {field_name} entry") from None
                expressions.append(
                    ExpressionRecord(
                        f"{video_id}/{index}{tag}{n}",
                        video_id,
                        text,
                        [target],
                        kind,
                        None if span is None else list(span),
                    )
                )
    fps = float(first.get("fps") or frames.native_fps) / frames.stride
    video = VideoRecord(
        video_id,
        ctx.source,
        split,
        [str(p) for p in frames.paths],
        [f"{i:06d}" for i in frames.indices],
        height,
        width,
        fps,
    )
    return VideoBundle(video, objects, expressions, Provenance(str(ann_path), None, str(vidor_path)))


def group_segments(annotations: list[Any], ann_path: Path) -> dict[tuple[str, Any, Any], list[tuple[int, dict]]]:
    groups: dict[tuple[str, Any, Any], list[tuple[int, dict]]] = {}
    for index, entry in enumerate(annotations):
        if not isinstance(entry, dict) or "vid" not in entry:
            groups.setdefault(("", index, None), []).append((index, entry))
            continue
        seg = entry.get("used_segment") or {}
        groups.setdefault((str(entry["vid"]), seg.get("begin_fid"), seg.get("end_fid")), []).append((index, entry))
    return groups


@register("vidstg", SPLITS, "VidSTG: {split}_annotations.json + VidOR trajectories + mp4 videos")
def load_vidstg(ctx: LoadContext) -> Iterator[VideoBundle]:
    found = ctx.annotation_files(
        SPLITS, annotation_file, "no VidSTG annotations ({train,val,test}_annotations.json)", "vidstg raw + vidor"
    )
    vidor = VidorIndex(ctx.root)
    for split, ann_path, sentences in ctx.split_annotations(found, list, "expected a list of annotations"):
        for (vid, begin, end), entries in group_segments(sentences, ann_path).items():
            try:
                if not vid:
                    raise ItemError(ann_path, f"annotation {entries[0][0]} is not a dict with a 'vid'")
                yield load_segment(ctx, split, ann_path, entries, vidor)
            except MALFORMED as exc:
                ctx.skip(exc, split=split, item=f"{ctx.source}/{vid}_{begin}_{end}", file=ann_path)
