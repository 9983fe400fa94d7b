"""Ref-YouTube-VOS (competition release): ``meta_expressions/<split>/meta_expressions.json`` plus
``<split>/{JPEGImages,Annotations}/<vid>/<frame>`` and ``<split>/meta.json``.

Quirks honoured (docs/data-formats.md §3.2): ``obj_id`` is a str scalar equal to the palette index of the annotation PNG,
read as raw indices (never ``convert("L")``); frame names skip by 5 (``00000, 00005``) and are not positions;
``valid/meta_expressions.json`` also lists the test videos, whose keys are subtracted; ``valid``/``test`` have no
public masks (a ``<split>/Annotations`` folder, as SPARROW-Mini writes for its held-out split, is read when present).
The palette-PNG builder here is shared with Ref-DAVIS17.
"""

from __future__ import annotations

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
    image_size,
    mask_track,
    read_index_png,
    read_release_json,
    register,
)
from sparrow.data.sources.mevis import iter_meta_videos, sorted_exp_items
from sparrow.storage import DataError

SPLITS = ("train", "valid", "test")
FPS = 6.0  # the frames are every 5th of the 30 fps original


def object_table(ctx: LoadContext, meta_path: Path, split: str) -> dict[str, dict[str, Any]]:
    """``meta.json`` objects per video (``{vid: {obj_id: {"category": ...}}}``); empty when the file is absent."""
    if not meta_path.is_file():
        return {}
    table: dict[str, dict[str, Any]] = {}
    for key, entry in iter_meta_videos(ctx, meta_path, split, item=f"{ctx.source}/{split}/meta.json"):
        objects = entry.get("objects", {}) if isinstance(entry, dict) else {}
        table[key] = {str(k): (v if isinstance(v, dict) else {}) for k, v in objects.items()}
    return table


def palette_bundle(
    ctx: LoadContext,
    *,
    split: str,
    key: str,
    frames: list[str],
    expressions: Any,
    jpeg_dir: Path,
    ann_dir: Path | None,
    meta_path: Path,
    objects_meta: dict[str, Any],
    fps: float,
) -> VideoBundle:
    """One video of a palette-PNG release (Ref-YouTube-VOS, Ref-DAVIS17); ``ann_dir=None`` means no ground truth."""
    if not frames or not all(isinstance(f, (str, int)) for f in frames):
        raise ItemError(meta_path, f"video {key}: 'frames' must be a non-empty list of frame names")
    names = sorted(str(f) for f in frames)
    paths = [jpeg_dir / f"{name}.jpg" for name in names]
    height, width = image_size(paths[0])
    video_id = f"{ctx.source}/{key}"
    has_gt = ann_dir is not None

    records: list[ExpressionRecord] = []
    referenced: list[str] = []
    for exp_id, exp in sorted_exp_items(expressions, meta_path, key):
        item = f"{key}/{exp_id}"
        try:
            if not isinstance(exp, dict) or not isinstance(exp.get("exp"), str):
                raise ItemError(meta_path, f"expression {item} has no text")
            object_ids: list[str] = []
            if has_gt:
                obj = exp.get("obj_id")
                if obj is None or isinstance(obj, (list, dict)) or not str(obj).strip().isdigit():
                    raise ItemError(meta_path, f"expression {item}: obj_id {obj!r} is not a palette index")
                object_ids = [str(int(str(obj).strip()))]
                referenced.extend(object_ids)
            records.append(ExpressionRecord(f"{video_id}/{exp_id}", video_id, exp["exp"], object_ids, "referring"))
        except MALFORMED as exc:
            ctx.skip(exc, split=split, item=f"{ctx.source}/{item}", file=meta_path)

    objects: list[ObjectRecord] = []
    if has_gt:
        # meta.json lists the video's objects; an expression naming another id refers to an unknown object, which
        # validation reports. Without meta.json, the ids come from the expressions and must show up in the PNGs.
        ids = sorted(objects_meta, key=_id_order) if objects_meta else list(dict.fromkeys(referenced))
        masks: dict[str, list] = {i: [] for i in ids}
        boxes: dict[str, list] = {i: [] for i in ids}
        for name in names:
            png = ann_dir / f"{name}.png"
            index = read_index_png(png)
            if index.shape[:2] != (height, width):
                raise ItemError(png, f"annotation is {index.shape[1]}x{index.shape[0]}, frames are {width}x{height}")
            for obj_id in ids:
                rle, box = mask_track(index == int(obj_id))
                masks[obj_id].append(rle)
                boxes[obj_id].append(box)
        for obj_id in ids:
            if not objects_meta and all(m is None for m in masks[obj_id]):
                continue
            category = objects_meta.get(obj_id, {}).get("category", "")
            objects.append(ObjectRecord(video_id, obj_id, str(category or ""), masks[obj_id], boxes[obj_id]))

    video = VideoRecord(video_id, ctx.source, split, [str(p) for p in paths], names, height, width, fps)
    return VideoBundle(
        video, objects, records, Provenance(str(meta_path), str(ann_dir) if ann_dir else None), has_gt=has_gt
    )


def _id_order(obj_id: str) -> tuple[int, str]:
    return (int(obj_id), "") if obj_id.isdigit() else (1 << 30, obj_id)


def _meta_dir(root: Path, split: str) -> Path:
    base = root / "meta_expressions"
    # VideoGLaMM opens meta_expressions/val/; the release folder is valid/. Accept either.
    if split == "valid" and not (base / "valid").is_dir() and (base / "val").is_dir():
        return base / "val"
    return base / split


def _keys(path: Path) -> set[str]:
    meta = read_release_json(path)
    videos = meta.get("videos") if isinstance(meta, dict) else None
    if not isinstance(videos, dict):
        raise ItemError(path, "no 'videos' dict at the top level")
    return set(videos)


@register("ref-youtube-vos", SPLITS, "Ref-YouTube-VOS: meta_expressions/<split> + palette PNG Annotations")
def load_ref_youtube_vos(ctx: LoadContext) -> Iterator[VideoBundle]:
    found = [s for s in SPLITS if (_meta_dir(ctx.root, s) / "meta_expressions.json").is_file()]
    if not found:
        raise DataError(
            f"{ctx.root}: no Ref-YouTube-VOS split (expected meta_expressions/<split>/meta_expressions.json)"
        )
    ctx.layout = "ref-youtube-vos"
    for split in found:
        if not ctx.wants(split):
            continue
        split_dir = ctx.root / split
        meta_path = _meta_dir(ctx.root, split) / "meta_expressions.json"
        if split == "test" and not (split_dir / "JPEGImages").is_dir():
            ctx.notes.append(f"{meta_path}: test frames absent; its keys only filter valid")
            continue
        exclude: set[str] = set()
        if split == "valid":
            test_meta = _meta_dir(ctx.root, "test") / "meta_expressions.json"
            if test_meta.is_file():
                try:
                    exclude = _keys(test_meta)
                except MALFORMED as exc:
                    ctx.skip(exc, split=split, item=f"{ctx.source}/test keys", file=test_meta)
                    continue
            else:
                ctx.notes.append(f"{test_meta} absent: valid videos without a JPEGImages folder are reported as test")
        ann_root = split_dir / "Annotations"
        has_gt = ann_root.is_dir()
        if split == "train" and not has_gt:
            ctx.skip(
                ItemError(ann_root, "missing: the train split is released with masks"),
                split=split,
                item=f"{ctx.source}/{split}",
            )
            continue
        ctx.gt_splits[split] = has_gt
        objects = object_table(ctx, split_dir / "meta.json", split)
        for key, entry in iter_meta_videos(ctx, meta_path, split):
            if key in exclude:
                continue
            try:
                if not isinstance(entry, dict):
                    raise ItemError(meta_path, f"video {key}: entry is not a dict")
                jpeg_dir = split_dir / "JPEGImages" / key
                if split == "valid" and not exclude and not jpeg_dir.is_dir():
                    raise ItemError(jpeg_dir, "listed in the valid meta but has no frames (a test video?)")
                yield palette_bundle(
                    ctx,
                    split=split,
                    key=key,
                    frames=entry.get("frames") or [],
                    expressions=entry.get("expressions", {}),
                    jpeg_dir=jpeg_dir,
                    ann_dir=ann_root / key if has_gt else None,
                    meta_path=meta_path,
                    objects_meta=objects.get(key, {}),
                    fps=FPS,
                )
            except MALFORMED as exc:
                ctx.skip(exc, split=split, item=f"{ctx.source}/{key}", file=meta_path)
