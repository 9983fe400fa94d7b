"""VideoGLaMM grounded-conversation (GCG) data, read from a ``video_dataset`` root (or one ``*_gcg`` folder).

Parts (docs/data-formats.md §4.3), each optional:

- ``vidstg_gcg`` / ``hcstvg_gcg``: ``<split>/<video_id>/frames/*.png``, binary ``masks/<id:03d>/<frame file>``,
  captions ``<split>_captions/<video_id>.json`` = ``{"caption": "... [phrase](id, id) ..."}``. VideoGLaMM's
  loader reads only the **first** id of each phrase (so only its masks are guaranteed); the curated phrase keeps
  every id whose ``masks/<id:03d>`` folder exists, meaning their union (``seg_targets(qa)[i][0]`` is
  VideoGLaMM's target). A root that is itself such a folder (``<split>_captions`` inside) is read as one.
- ``mevis_gcg``: ``<split>/<mevis_vid>.json`` captions whose phrase id tuples must equal an existing MeViS
  expression's ``obj_id`` list exactly (order included); frames and masks come from MeViS (``<root>/mevis``).
  A phrase with several ids refers to their union.
- ``video_gcg/instruction_data/{train,val,test}.json`` (BURST + YouTube-VIS): YTVIS-like videos whose
  ``dense_cap`` marks words by ``token_pos`` (the word index) with ``mask_id`` s; ids at the same word are one
  phrase (their union). Frames resolve under ``ytvis/vos/train/JPEGImages`` for ``yt19`` videos, else
  ``burst/frames/{train,val}``. RLEs may be uncompressed. Videos whose ``dense_cap`` is null have no caption and
  are counted in the report notes.

Each caption becomes a grounded caption: the caption (plain text with phrase spans) and one referring expression
per phrase (:func:`~sparrow.data.sources.base.grounded_caption`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sparrow.data.qa_templates import MARKUP, format_markup, parse_markup
from sparrow.data.records import ObjectRecord, VideoRecord
from sparrow.data.sources.base import (
    FPS_UNKNOWN,
    MALFORMED,
    ItemError,
    LoadContext,
    Provenance,
    VideoBundle,
    grounded_caption,
    image_size,
    mask_track,
    read_binary_png,
    read_release_json,
    register,
    rle_track,
    sorted_frames,
)
from sparrow.data.sources.mevis import iter_meta_videos, mevis_family_bundle
from sparrow.storage import DataError

SPLITS = ("train", "val", "valid_u", "test")
PER_SAMPLE_PARTS = ("vidstg_gcg", "hcstvg_gcg")


def read_caption(path: Path) -> str:
    data = read_release_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("caption"), str):
        raise ItemError(path, 'expected {"caption": str}')
    return data["caption"]


def keyed(label: str, key: str) -> str:
    return f"{label}/{key}" if label else key


def mask_folder(sample: Path, obj: str) -> Path:
    return sample / "masks" / (f"{int(obj):03d}" if obj.isdigit() else obj)


def phrase_ids(caption: str, sample: Path, where: Path) -> tuple[str, list[str], int]:
    """The caption with the ids that have masks, its referents in order, and how many ids were dropped.

    VideoGLaMM's loader reads only the first id of each phrase, so the release guarantees masks for those; a
    further id keeps its union meaning when its mask folder exists and is dropped (and counted) otherwise.
    """
    kept: list[list[str]] = []
    dropped = 0
    for phrase, ids in parse_markup(caption):
        if not ids:
            raise ItemError(where, f"phrase [{phrase}] has no object id")
        if not mask_folder(sample, ids[0]).is_dir():
            raise ItemError(mask_folder(sample, ids[0]), f"no masks for object {ids[0]} of phrase [{phrase}]")
        rest = [i for i in ids[1:] if mask_folder(sample, i).is_dir()]
        dropped += len(ids) - 1 - len(rest)
        kept.append([ids[0], *rest])
    rewritten = iter(format_markup(phrase, ids) for (phrase, _), ids in zip(parse_markup(caption), kept))
    return MARKUP.sub(lambda _: next(rewritten), caption), list(dict.fromkeys(i for ids in kept for i in ids)), dropped


def per_sample_video(ctx: LoadContext, label: str, part_dir: Path, split: str, caption_path: Path) -> VideoBundle:
    key = caption_path.stem
    sample = part_dir / split / key
    caption, object_ids, dropped = phrase_ids(read_caption(caption_path), sample, caption_path)
    if dropped:
        ctx.notes.append(f"{caption_path}: {dropped} phrase id(s) without a mask folder kept out of the referents")
    frames = sorted_frames(sample / "frames")
    if not frames:
        raise ItemError(sample / "frames", "no frames")
    height, width = image_size(frames[0])
    video_id = f"{ctx.source}/{keyed(label, key)}"
    objects = []
    for obj in object_ids:
        folder = mask_folder(sample, obj)
        masks, boxes = [], []
        for frame in frames:
            png = folder / frame.name  # mask files carry the frame's file name
            mask = read_binary_png(png)
            if mask.shape != (height, width):
                raise ItemError(png, f"mask is {mask.shape[1]}x{mask.shape[0]}, frames are {width}x{height}")
            rle, box = mask_track(mask)
            masks.append(rle)
            boxes.append(box)
        objects.append(ObjectRecord(video_id, obj, "", masks, boxes))
    expressions = grounded_caption(video_id, "0", caption)
    video = VideoRecord(
        video_id, ctx.source, split, [str(f) for f in frames], [f.stem for f in frames], height, width, FPS_UNKNOWN
    )
    return VideoBundle(video, objects, expressions, Provenance(str(caption_path), str(sample / "masks")))


def load_per_sample(ctx: LoadContext, label: str, part_dir: Path) -> Iterator[VideoBundle]:
    for captions_dir in sorted(part_dir.glob("*_captions")):
        split = captions_dir.name[: -len("_captions")]
        ctx.gt_splits[split] = True
        if not ctx.wants(split):
            continue
        for caption_path in sorted(captions_dir.glob("*.json")):
            try:
                yield per_sample_video(ctx, label, part_dir, split, caption_path)
            except MALFORMED as exc:
                ctx.skip(exc, split=split, item=f"{ctx.source}/{keyed(label, caption_path.stem)}", file=caption_path)


def load_mevis_gcg(ctx: LoadContext, label: str, part_dir: Path, mevis_root: Path) -> Iterator[VideoBundle]:
    for split_dir in sorted(p for p in part_dir.iterdir() if p.is_dir()):
        split = split_dir.name
        ctx.gt_splits[split] = True
        if not ctx.wants(split):
            continue
        meta_path = mevis_root / split / "meta_expressions.json"
        mask_path = mevis_root / split / "mask_dict.json"
        try:
            if not meta_path.is_file() or not mask_path.is_file():
                raise ItemError(
                    mevis_root / split, "mevis_gcg needs the MeViS split with meta_expressions.json and mask_dict.json"
                )
            mask_dict = read_release_json(mask_path)
        except MALFORMED as exc:
            ctx.skip(exc, split=split, item=f"{ctx.source}/{keyed(label, split)}", file=mask_path)
            continue
        meta = dict(iter_meta_videos(ctx, meta_path, split))
        for caption_path in sorted(split_dir.glob("*.json")):
            key = caption_path.stem
            try:
                if key not in meta:
                    raise ItemError(caption_path, f"MeViS {split} has no video {key}")
                yield mevis_gcg_video(
                    ctx, label, split, key, meta[key], caption_path, mevis_root, meta_path, mask_dict, mask_path
                )
            except MALFORMED as exc:
                ctx.skip(exc, split=split, item=f"{ctx.source}/{keyed(label, key)}", file=caption_path)
        del mask_dict, meta


def mevis_gcg_video(
    ctx: LoadContext,
    label: str,
    split: str,
    key: str,
    entry: Any,
    caption_path: Path,
    mevis_root: Path,
    meta_path: Path,
    mask_dict: dict,
    mask_path: Path,
) -> VideoBundle:
    caption = read_caption(caption_path)
    phrases = parse_markup(caption)
    known = {
        tuple(str(int(i)) for i in (e.get("obj_id") or []))
        for e in (entry.get("expressions") or {}).values()
        if isinstance(e, dict) and isinstance(e.get("obj_id"), list)
    }
    for phrase, ids in phrases:
        if tuple(ids) not in known:
            raise ItemError(caption_path, f"phrase [{phrase}]({', '.join(ids)}) matches no MeViS expression of {key}")
    inner = mevis_family_bundle(
        ctx,
        split=split,
        key=keyed(label, key),
        entry=entry,
        frame_dir=mevis_root / split / "JPEGImages" / key,
        meta_path=meta_path,
        mask_dict=mask_dict,
        mask_path=mask_path,
        kind_of=lambda exp, text: "referring",
    )
    wanted = list(dict.fromkeys(i for _, ids in phrases for i in ids))
    objects = [o for o in inner.objects if o.object_id in wanted]
    video_id = inner.video.video_id
    expressions = grounded_caption(video_id, "0", caption)
    return VideoBundle(inner.video, objects, expressions, Provenance(str(caption_path), str(mask_path)))


def instruction_caption(dense: dict, where: Path) -> tuple[str, list[str]]:
    """Word-index captions as markup: the word at ``token_pos`` becomes ``[word](mask ids at that word)``."""
    words = str(dense["caption"]).split(" ")
    at: dict[int, list[str]] = {}
    for pos, mask_id in zip(dense.get("token_pos") or [], dense.get("mask_id") or []):
        if not 0 <= int(pos) < len(words):
            raise ItemError(where, f"token_pos {pos} outside a {len(words)}-word caption")
        at.setdefault(int(pos), []).append(str(mask_id))
    for pos, ids in at.items():
        words[pos] = format_markup(words[pos], ids)
    return " ".join(words), list(dict.fromkeys(i for pos in sorted(at) for i in at[pos]))


def instruction_video(
    ctx: LoadContext, label: str, root: Path, split: str, ann_path: Path, video: dict, annotations: dict[str, dict]
) -> VideoBundle:
    try:
        files = list(video["file_names"])
        width, height, length = int(video["width"]), int(video["height"]), int(video["length"])
        dataset = (video.get("metadata") or {}).get("dataset") or video.get("dataset_split")
        caption, mask_ids = instruction_caption(video["dense_cap"], ann_path)
        vid = str(video["id"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ItemError(ann_path, f"video {video.get('id')}: malformed entry ({exc!r})") from None
    if len(files) != length:
        raise ItemError(ann_path, f"video {vid}: {len(files)} file_names for length {length}")
    if dataset == "yt19":
        base = root / "ytvis" / "vos" / "train" / "JPEGImages"
    else:
        base = root / "burst" / "frames" / ("train" if split == "train" else "val")
    paths = [base / f for f in files]
    size = image_size(paths[0])
    if size != (height, width):
        raise ItemError(paths[0], f"frame is {size[1]}x{size[0]}, annotation says {width}x{height}")
    video_id = f"{ctx.source}/{keyed(label, vid)}"
    objects = []
    for mask_id in mask_ids:
        ann = annotations.get(mask_id)
        if ann is None:
            raise ItemError(ann_path, f"video {vid}: mask_id {mask_id} has no annotation")
        segs = ann.get("segmentations") or []
        if len(segs) != length:
            raise ItemError(ann_path, f"annotation {mask_id}: {len(segs)} segmentations for {length} frames")
        masks, boxes = [], []
        for t, rle in enumerate(segs):
            mask, box = rle_track(rle, (height, width), ann_path, f"annotation {mask_id} frame {t}")
            masks.append(mask)
            boxes.append(box)
        objects.append(ObjectRecord(video_id, mask_id, "", masks, boxes))
    expressions = grounded_caption(video_id, "0", caption)
    names = [Path(f).stem for f in files]
    record = VideoRecord(video_id, ctx.source, split, [str(p) for p in paths], names, height, width, FPS_UNKNOWN)
    return VideoBundle(record, objects, expressions, Provenance(str(ann_path), str(ann_path)))


def load_instruction_data(ctx: LoadContext, label: str, part_dir: Path, root: Path) -> Iterator[VideoBundle]:
    for split in ("train", "val", "test"):
        ann_path = part_dir / "instruction_data" / f"{split}.json"
        if not ann_path.is_file():
            continue
        ctx.gt_splits[split] = True
        if not ctx.wants(split):
            continue
        try:
            data = read_release_json(ann_path)
            if not isinstance(data, dict) or not isinstance(data.get("videos"), list):
                raise ItemError(ann_path, 'expected {"videos": [...], "annotations": [...]}')
            annotations = {str(a["id"]): a for a in data.get("annotations") or []}
        except (KeyError, TypeError):
            ctx.skip(
                ItemError(ann_path, "an annotation lacks 'id'"), split=split, item=f"{ctx.source}/{keyed(label, split)}"
            )
            continue
        except MALFORMED as exc:
            ctx.skip(exc, split=split, item=f"{ctx.source}/{keyed(label, split)}", file=ann_path)
            continue
        uncaptioned = 0
        for video in data["videos"]:
            if isinstance(video, dict) and not (video.get("dense_cap") or {}).get("caption"):
                uncaptioned += 1
                continue
            try:
                if not isinstance(video, dict):
                    raise ItemError(ann_path, "a video entry is not a dict")
                yield instruction_video(ctx, label, root, split, ann_path, video, annotations)
            except MALFORMED as exc:
                vid = video.get("id") if isinstance(video, dict) else "?"
                ctx.skip(exc, split=split, item=f"{ctx.source}/{keyed(label, str(vid))}", file=ann_path)
        if uncaptioned:
            ctx.notes.append(f"{ann_path}: {uncaptioned} videos without a dense caption (nothing to curate)")
        del data, annotations


def find_parts(root: Path) -> list[tuple[str, str, Path]]:
    """(kind, label, folder) of each GCG part: the ``*_gcg`` folders of a ``video_dataset`` root, or the root itself
    when it is one part (a per-sample root is recognised by its ``<split>_captions`` folders). The label is the
    part's level in curated video ids; a root that is itself a part adds no level."""
    names = (*PER_SAMPLE_PARTS, "mevis_gcg", "video_gcg")
    parts = [(name, name, root / name) for name in names if (root / name).is_dir()]
    if parts:
        return parts
    if root.name in names:
        return [(root.name, "", root)]
    if any(p.is_dir() for p in root.glob("*_captions")):
        return [(PER_SAMPLE_PARTS[0], "", root)]
    return []


@register("videogcg", SPLITS, "VideoGLaMM GCG: vidstg_gcg / hcstvg_gcg / mevis_gcg / video_gcg")
def load_videogcg(ctx: LoadContext) -> Iterator[VideoBundle]:
    parts = find_parts(ctx.root)
    if not parts:
        raise DataError(f"{ctx.root}: no GCG part (vidstg_gcg, hcstvg_gcg, mevis_gcg, video_gcg or <split>_captions/)")
    ctx.layout = "videoglamm gcg: " + ", ".join(f"{kind} ({folder.name})" for kind, _, folder in parts)
    base = ctx.root if parts[0][2] != ctx.root else ctx.root.parent
    for kind, label, part_dir in parts:
        if kind in PER_SAMPLE_PARTS:
            yield from load_per_sample(ctx, label, part_dir)
        elif kind == "mevis_gcg":
            yield from load_mevis_gcg(ctx, label, part_dir, base / "mevis")
        else:
            yield from load_instruction_data(ctx, label, part_dir, base)
