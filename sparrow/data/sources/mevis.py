"""MeViS (ICCV 2023) as released: ``<split>/{JPEGImages/<vid>/<frame>.jpg, meta_expressions.json, mask_dict.json}``.

Quirks honoured (docs/data-formats.md §3.1): masks are indexed by *position* in ``sorted(frames)``; ``obj_id`` (video-local)
and ``anno_id`` (global, the ``mask_dict`` key as a str) are aligned int lists; a multi-object expression refers to
the union of its objects; ``valid`` has no ``mask_dict.json`` (unknown ground truth), though SPARROW-Mini writes
one there too, and it is read when present; ``train`` and ``valid_u`` without it are an error (their expressions
would lose every referent). The MeViS-family builder here is shared with ReVOS.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from sparrow.data.records import ExpressionRecord, ObjectRecord, VideoRecord
from sparrow.data.sources.base import (
    FPS_UNKNOWN,
    MALFORMED,
    ItemError,
    LoadContext,
    Provenance,
    VideoBundle,
    image_size,
    read_release_json,
    register,
    rle_track,
)
from sparrow.storage import DataError

SPLITS = ("train", "valid_u", "valid")
# Splits released with masks: without their mask_dict.json every expression would lose its referents.
MASKED_SPLITS = ("train", "valid_u")


def as_id_list(value: Any) -> list[int]:
    """``obj_id`` / ``anno_id`` as an int list: MeViS stores int lists, but a scalar or a str also occurs."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [int(v) for v in value]
    if isinstance(value, str):
        return [int(v) for v in value.replace(",", " ").split()]
    return [int(value)]


def sorted_exp_items(expressions: Any, where: Path, key: str) -> list[tuple[str, dict]]:
    """Expressions of one video in exp-id order (numeric where the ids are numbers)."""
    if isinstance(expressions, list):
        items = [(str(e.get("exp_id", i)), e) for i, e in enumerate(expressions)]
    elif isinstance(expressions, dict):
        items = list(expressions.items())
    else:
        raise ItemError(where, f"video {key}: 'expressions' is a {type(expressions).__name__}, not a dict")
    return sorted(items, key=lambda kv: (0, int(kv[0]), "") if kv[0].isdigit() else (1, 0, kv[0]))


def mevis_family_bundle(
    ctx: LoadContext,
    *,
    split: str,
    key: str,
    entry: Any,
    frame_dir: Path,
    meta_path: Path,
    mask_dict: dict | None,
    mask_path: Path | None,
    kind_of: Callable[[dict, str], str],
) -> VideoBundle:
    """One video of a MeViS-schema release; bad expressions are skipped through ``ctx``, a bad video raises."""
    if not isinstance(entry, dict):
        raise ItemError(meta_path, f"video {key}: entry is a {type(entry).__name__}, not a dict")
    frames = entry.get("frames")
    if not isinstance(frames, list) or not frames or not all(isinstance(f, (str, int)) for f in frames):
        raise ItemError(meta_path, f"video {key}: 'frames' must be a non-empty list of frame names")
    names = sorted(str(f) for f in frames)
    paths = [frame_dir / f"{name}.jpg" for name in names]
    height, width = image_size(paths[0])
    video_id = f"{ctx.source}/{key}"
    has_gt = mask_dict is not None

    anno_of: dict[str, int] = {}
    expressions: list[ExpressionRecord] = []
    for exp_id, exp in sorted_exp_items(entry.get("expressions", {}), meta_path, key):
        item = f"{key}/{exp_id}"
        try:
            if not isinstance(exp, dict):
                raise ItemError(meta_path, f"expression {item} is not a dict")
            text = exp.get("exp", exp.get("exp_text"))
            if not isinstance(text, str):
                raise ItemError(meta_path, f"expression {item} has no text")
            object_ids: list[str] = []
            if has_gt:
                try:
                    obj_ids, anno_ids = as_id_list(exp.get("obj_id")), as_id_list(exp.get("anno_id"))
                except (TypeError, ValueError):
                    raise ItemError(meta_path, f"expression {item}: ids are not integers") from None
                if len(obj_ids) != len(anno_ids):
                    raise ItemError(meta_path, f"expression {item}: {len(obj_ids)} obj_id vs {len(anno_ids)} anno_id")
                for obj, anno in zip(obj_ids, anno_ids):
                    if str(anno) not in mask_dict:
                        raise ItemError(mask_path, f"expression {item}: anno_id {anno} has no masks")
                    known = anno_of.get(str(obj))
                    if known is not None and known != anno:
                        raise ItemError(meta_path, f"expression {item}: obj_id {obj} has anno_ids {known} and {anno}")
                new = {str(o): a for o, a in zip(obj_ids, anno_ids)}
                anno_of.update(new)
                object_ids = list(dict.fromkeys(new))
            try:
                kind = kind_of(exp, text)
            except (TypeError, ValueError) as exc:
                raise ItemError(meta_path, f"expression {item}: {exc}") from None
            expressions.append(ExpressionRecord(f"{video_id}/{exp_id}", video_id, text, object_ids, kind))
        except MALFORMED as exc:
            ctx.skip(exc, split=split, item=f"{ctx.source}/{item}", file=meta_path)

    objects: list[ObjectRecord] = []
    for obj_id, anno in anno_of.items():
        try:
            track = mask_dict[str(anno)]
            if not isinstance(track, list) or len(track) != len(names):
                got = len(track) if isinstance(track, list) else type(track).__name__
                raise ItemError(mask_path, f"anno_id {anno} of video {key}: {got} mask entries for {len(names)} frames")
            masks, boxes = [], []
            for t, rle in enumerate(track):
                mask, box = rle_track(rle, (height, width), mask_path, f"anno_id {anno} frame {t}")
                masks.append(mask)
                boxes.append(box)
            objects.append(ObjectRecord(video_id, obj_id, "", masks, boxes))
        except MALFORMED as exc:
            ctx.skip(exc, split=split, item=f"{video_id}/object {obj_id}", file=mask_path)

    video = VideoRecord(video_id, ctx.source, split, [str(p) for p in paths], names, height, width, FPS_UNKNOWN)
    return VideoBundle(
        video, objects, expressions, Provenance(str(meta_path), str(mask_path) if mask_path else None), has_gt=has_gt
    )


def iter_meta_videos(
    ctx: LoadContext, meta_path: Path, split: str, item: str | None = None
) -> Iterator[tuple[str, Any]]:
    """(key, entry) of a ``{"videos": {...}}`` file; an unreadable file is one bad item (``item``, by default the
    whole split)."""
    try:
        meta = read_release_json(meta_path)
        videos = meta.get("videos") if isinstance(meta, dict) else None
        if not isinstance(videos, dict):
            raise ItemError(meta_path, "no 'videos' dict at the top level")
    except MALFORMED as exc:
        ctx.skip(exc, split=split, item=item or f"{ctx.source}/{split}", file=meta_path)
        return
    yield from videos.items()


def _referring(exp: dict, text: str) -> str:
    return "referring"


@register("mevis", SPLITS, "MeViS: JPEGImages + meta_expressions.json + mask_dict.json per split")
def load_mevis(ctx: LoadContext) -> Iterator[VideoBundle]:
    found = [s for s in SPLITS if (ctx.root / s / "meta_expressions.json").is_file()]
    if not found:
        raise DataError(f"{ctx.root}: no MeViS split (expected <split>/meta_expressions.json for one of {SPLITS})")
    ctx.layout = "mevis"
    for split in found:
        if not ctx.wants(split):
            continue
        split_dir = ctx.root / split
        mask_path = split_dir / "mask_dict.json"
        mask_dict = None
        if split in MASKED_SPLITS and not mask_path.is_file():
            ctx.skip(
                ItemError(mask_path, f"missing: the {split} split is released with masks"),
                split=split,
                item=f"{ctx.source}/{split}",
            )
            continue
        if mask_path.is_file():
            mask_dict = ctx.read_json_of(
                mask_path, dict, "expected a dict anno_id -> list of RLE", split=split, item=f"{ctx.source}/{split}"
            )
            if mask_dict is None:
                continue
        ctx.gt_splits[split] = mask_dict is not None
        meta_path = split_dir / "meta_expressions.json"
        for key, entry in iter_meta_videos(ctx, meta_path, split):
            try:
                yield mevis_family_bundle(
                    ctx,
                    split=split,
                    key=key,
                    entry=entry,
                    frame_dir=split_dir / "JPEGImages" / key,
                    meta_path=meta_path,
                    mask_dict=mask_dict,
                    mask_path=mask_path if mask_dict is not None else None,
                    kind_of=_referring,
                )
            except MALFORMED as exc:
                ctx.skip(exc, split=split, item=f"{ctx.source}/{key}", file=meta_path)
        del mask_dict
