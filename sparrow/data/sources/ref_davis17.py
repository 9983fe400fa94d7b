"""Ref-DAVIS17 in either of its two forms.

1. The ReferFormer conversion (what the hosts read): ``meta_expressions/{train,valid}/meta_expressions.json`` plus
   ``{train,valid}/{JPEGImages,Annotations}/<video>/<frame>`` and a ``meta.json`` without ``frames``.
2. The raw release: ``DAVIS/{JPEGImages/480p, Annotations_unsupervised/480p, ImageSets/2017/{train,val}.txt,
   davis_semantics.json}`` with the text files ``Davis17_annot{1,2}[_full_video].txt`` (in
   ``davis_text_annotations/`` or the root). Lines read ``<video> <obj_id> "<expression>"``; annotator-2 files are
   latin-1; three video names are misspelled (``clasic-car``, ``dog-scale``, ``motor-bike``). Expressions get the
   converted ids: objects sorted by str ``obj_id``, 4 per object in the order annotator 1 first-frame, annotator 1
   full-video, annotator 2 first-frame, annotator 2 full-video (``exp_id = 4k + slot``).

Masks come from the *unsupervised* palette annotations, read as raw indices (255 = void is no object).
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

from sparrow.data.sources.base import (
    MALFORMED,
    ItemError,
    LoadContext,
    VideoBundle,
    read_release_json,
    read_text,
    register,
)
from sparrow.data.sources.mevis import iter_meta_videos
from sparrow.data.sources.ref_youtube_vos import object_table, palette_bundle
from sparrow.storage import DataError

SPLITS = ("train", "valid")
FPS = 24.0
ANNOTATOR_FILES = (  # slot order of the converted expression ids, and each file's encoding
    ("Davis17_annot1.txt", "utf-8"),
    ("Davis17_annot1_full_video.txt", "utf-8"),
    ("Davis17_annot2.txt", "latin-1"),
    ("Davis17_annot2_full_video.txt", "latin-1"),
)
MISSPELLED = {"clasic-car": "classic-car", "dog-scale": "dogs-scale", "motor-bike": "motorbike"}


@register("ref-davis17", SPLITS, "Ref-DAVIS17: ReferFormer-converted layout, or raw DAVIS + Davis17_annot*.txt")
def load_ref_davis17(ctx: LoadContext) -> Iterator[VideoBundle]:
    if (ctx.root / "meta_expressions").is_dir():
        ctx.layout = "referformer-converted"
        yield from _converted(ctx)
    elif _text_dir(ctx.root) is not None and (ctx.root / "DAVIS").is_dir():
        ctx.layout = "raw (DAVIS + davis_text_annotations)"
        yield from _raw(ctx)
    else:
        raise DataError(f"{ctx.root}: neither meta_expressions/ (ReferFormer layout) nor DAVIS/ + Davis17_annot*.txt")


def _converted(ctx: LoadContext) -> Iterator[VideoBundle]:
    found = [s for s in SPLITS if (ctx.root / "meta_expressions" / s / "meta_expressions.json").is_file()]
    if not found:
        raise DataError(f"{ctx.root}: no meta_expressions/<split>/meta_expressions.json for {SPLITS}")
    for split in found:
        if not ctx.wants(split):
            continue
        split_dir = ctx.root / split
        meta_path = ctx.root / "meta_expressions" / split / "meta_expressions.json"
        ann_root = split_dir / "Annotations"
        if not ann_root.is_dir():  # both converted splits carry their DAVIS annotations
            ctx.skip(
                ItemError(ann_root, f"missing: the {split} split is released with masks"),
                split=split,
                item=f"{ctx.source}/{split}",
            )
            continue
        ctx.gt_splits[split] = True
        objects = object_table(ctx, split_dir / "meta.json", split)
        for key, entry in iter_meta_videos(ctx, meta_path, split):
            try:
                if not isinstance(entry, dict):
                    raise ItemError(meta_path, f"video {key}: entry is not a dict")
                yield palette_bundle(
                    ctx,
                    split=split,
                    key=key,
                    frames=entry.get("frames") or [],
                    expressions=entry.get("expressions", {}),
                    jpeg_dir=split_dir / "JPEGImages" / key,
                    ann_dir=ann_root / key if ann_root.is_dir() else None,
                    meta_path=meta_path,
                    objects_meta=objects.get(key, {}),
                    fps=FPS,
                )
            except MALFORMED as exc:
                ctx.skip(exc, split=split, item=f"{ctx.source}/{key}", file=meta_path)


def _text_dir(root: Path) -> Path | None:
    for candidate in (root / "davis_text_annotations", root):
        if (candidate / ANNOTATOR_FILES[0][0]).is_file():
            return candidate
    return None


def parse_annotator_file(ctx: LoadContext, path: Path, encoding: str) -> dict[str, dict[str, str]]:
    """``{video: {obj_id: expression}}`` from one ``Davis17_annot*.txt``; bad lines are bad items."""
    table: dict[str, dict[str, str]] = defaultdict(dict)
    text = read_text(path, encoding)
    for lineno, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        parts = line.split(None, 2)
        try:
            if len(parts) < 3 or not parts[1].isdigit():
                raise ItemError(f"{path}:{lineno}", 'expected <video> <obj_id> "<expression>"')
            video = MISSPELLED.get(parts[0], parts[0])
            table[video][parts[1]] = parts[2].strip().strip('"').strip()
        except MALFORMED as exc:
            ctx.skip(exc, split=None, item=f"{ctx.source}/{path.name}:{lineno}", file=path)
    return table


def _raw(ctx: LoadContext) -> Iterator[VideoBundle]:
    davis = ctx.root / "DAVIS"
    text_dir = _text_dir(ctx.root)
    annotators = []
    for name, encoding in ANNOTATOR_FILES:
        path = text_dir / name
        try:
            annotators.append(parse_annotator_file(ctx, path, encoding))
        except MALFORMED as exc:
            ctx.skip(exc, split=None, item=f"{ctx.source}/{name}", file=path)
            annotators.append({})
    semantics_path = davis / "davis_semantics.json"
    semantics = {}
    if semantics_path.is_file():
        try:
            semantics = read_release_json(semantics_path)
        except MALFORMED as exc:
            ctx.skip(exc, split=None, item=f"{ctx.source}/davis_semantics.json", file=semantics_path)
    for split, list_name in (("train", "train.txt"), ("valid", "val.txt")):
        list_path = davis / "ImageSets" / "2017" / list_name
        if not list_path.is_file() or not ctx.wants(split):
            continue
        ctx.gt_splits[split] = True
        try:
            videos = [v.strip() for v in read_text(list_path).splitlines() if v.strip()]
        except MALFORMED as exc:
            ctx.skip(exc, split=split, item=f"{ctx.source}/{split}", file=list_path)
            continue
        for video in videos:
            try:
                yield _raw_video(ctx, split, video, davis, annotators, semantics.get(video, {}), text_dir)
            except MALFORMED as exc:
                ctx.skip(exc, split=split, item=f"{ctx.source}/{video}", file=list_path)


def _raw_video(
    ctx: LoadContext,
    split: str,
    video: str,
    davis: Path,
    annotators: list[dict[str, dict[str, str]]],
    semantics: dict,
    text_dir: Path,
) -> VideoBundle:
    jpeg_dir = davis / "JPEGImages" / "480p" / video
    try:
        frames = sorted(p.rsplit(".", 1)[0] for p in os.listdir(jpeg_dir) if p.lower().endswith(".jpg"))
    except FileNotFoundError:
        raise ItemError(jpeg_dir, "frame folder not found") from None
    obj_ids = sorted({o for table in annotators for o in table.get(video, {})})
    expressions: dict[str, dict] = {}
    for k, obj in enumerate(obj_ids):
        for slot, table in enumerate(annotators):
            text = table.get(video, {}).get(obj)
            if text is None:
                ctx.skip(
                    ItemError(text_dir / ANNOTATOR_FILES[slot][0], f"no expression for {video} object {obj}"),
                    split=split,
                    item=f"{ctx.source}/{video}/{4 * k + slot}",
                )
                continue
            expressions[str(4 * k + slot)] = {"exp": text, "obj_id": obj}
    objects_meta = {str(k): {"category": v} for k, v in semantics.items()} if isinstance(semantics, dict) else {}
    return palette_bundle(
        ctx,
        split=split,
        key=video,
        frames=frames,
        expressions=expressions,
        jpeg_dir=jpeg_dir,
        ann_dir=davis / "Annotations_unsupervised" / "480p" / video,
        meta_path=text_dir / ANNOTATOR_FILES[0][0],
        objects_meta=objects_meta,
        fps=FPS,
    )
