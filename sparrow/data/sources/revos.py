"""ReVOS (VISA, ECCV 2024): ``JPEGImages/<source>/<video>/<frame>.jpg``, one ``mask_dict.json`` for both splits and
``meta_expressions_{train,valid}_.json``.

Quirks honoured (docs/data-formats.md §3.4): the meta file names end in an underscore; video keys carry the source prefix
(``MOSE/<id>``), kept in the curated id (``revos/MOSE/<id>``); the Sa2VA copy drops the ``JPEGImages`` level;
``type_id`` 1 marks reasoning instructions (without it, text containing ``?`` counts as reasoning); empty
``obj_id``/``anno_id`` lists are no-target instructions, kept with ``object_ids == []``; a ``mask_dict`` frame may
be a list of RLEs (reduced by OR).
"""

from __future__ import annotations

from collections.abc import Iterator

from sparrow.data.sources.base import MALFORMED, ItemError, LoadContext, VideoBundle, register
from sparrow.data.sources.mevis import iter_meta_videos, mevis_family_bundle
from sparrow.storage import DataError

SPLITS = ("train", "valid")


def revos_kind(exp: dict, text: str) -> str:
    type_id = exp.get("type_id")
    if type_id is not None:
        return "reasoning" if int(type_id) == 1 else "referring"
    return "reasoning" if "?" in text else "referring"


@register("revos", SPLITS, "ReVOS: JPEGImages/<source>/<vid> + mask_dict.json + meta_expressions_<split>_.json")
def load_revos(ctx: LoadContext) -> Iterator[VideoBundle]:
    found = [s for s in SPLITS if (ctx.root / f"meta_expressions_{s}_.json").is_file()]
    if not found:
        raise DataError(
            f"{ctx.root}: no ReVOS meta (expected meta_expressions_train_.json / meta_expressions_valid_.json)"
        )
    frames_root = ctx.root / "JPEGImages" if (ctx.root / "JPEGImages").is_dir() else ctx.root
    ctx.layout = "visa" if frames_root != ctx.root else "sa2va (no JPEGImages level)"
    mask_path = ctx.root / "mask_dict.json"
    mask_dict = None
    for split in found:
        if not ctx.wants(split):
            continue
        if mask_dict is None:
            mask_dict = ctx.read_json_of(
                mask_path,
                dict,
                "expected a dict anno_id -> list of RLE",
                split=None,
                item=f"{ctx.source}/mask_dict.json",
            )
            if mask_dict is None:
                return
        ctx.gt_splits[split] = True
        meta_path = ctx.root / f"meta_expressions_{split}_.json"
        for key, entry in iter_meta_videos(ctx, meta_path, split):
            try:
                yield mevis_family_bundle(
                    ctx,
                    split=split,
                    key=key,
                    entry=entry,
                    frame_dir=frames_root / key,
                    meta_path=meta_path,
                    mask_dict=mask_dict,
                    mask_path=mask_path,
                    kind_of=revos_kind,
                )
            except MALFORMED as exc:
                ctx.skip(exc, split=split, item=f"{ctx.source}/{key}", file=meta_path)
