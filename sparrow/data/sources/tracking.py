"""SPARROW's TSF tracking layout (docs/data-formats.md §5): GOT-10k, LaSOT, VID-Sentence, A2D-Sentences and HC-STVG as
per-sequence folders ``img/`` + ``mask/`` + ``groundtruth.txt`` + ``nlp.txt`` under a ``VOT_dataset`` root.

Rules honoured:

- A folder is a sample when ``img/`` and ``mask/`` are folders and ``groundtruth.txt`` and ``nlp.txt`` exist; the
  scene level (``<seq>/<scene>/``) is just another folder level. Each sub-source is looked up under
  ``<root>/VOT_dataset`` first, then under ``<root>``.
- Frames are every image in ``img/`` sorted by file name.
- The mask of object ``k`` on frame ``F`` (stem ``S``) is the first existing file of ``mask/kkk/S.png``,
  ``mask/S_k.png``, ``mask/S.png``, ``mask/kkk/F.png``, ``mask/F_k.png``, ``mask/F.png``; grayscale binarised at
  > 127 (a palette PNG by raw index, since its luminance depends on the palette). A missing mask is an error, as
  in SPARROW's loader.
- ``groundtruth.txt``: blank lines skipped, fields split on commas or whitespace, short lines padded with zeros,
  unparsable or NaN lines are zeros (an all-zero box is an absent target); one line per frame. GOT-10k and LaSOT
  store ``x,y,w,h``, VID-Sentence, A2D-Sentences and HC-STVG ``x1,y1,x2,y2``. The box belongs to the first
  referenced object; other objects get boxes from their masks.
- ``nlp.txt``: non-empty lines stripped and joined by spaces. Without markup the caption refers to object ``1``;
  with ``[phrase](ids)`` markup only the first id of each phrase is used. One phrase gives a referring
  expression (plain text); several give a ``caption`` expression that keeps the markup (first ids only).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sparrow.data.boxes import mask_to_box
from sparrow.data.qa_templates import MARKUP, format_markup, parse_markup, strip_markup
from sparrow.data.records import ExpressionRecord, ObjectRecord, VideoRecord
from sparrow.data.rle import encode_rle
from sparrow.data.sources.base import (
    FPS_UNKNOWN,
    MALFORMED,
    ItemError,
    LoadContext,
    Provenance,
    VideoBundle,
    image_size,
    read_binary_png,
    read_text,
    register,
    sorted_frames,
    xywh_to_xyxy,
)
from sparrow.storage import DataError

SPLITS = ("train", "val")


@dataclass(frozen=True)
class TrackingFamily:
    """One of the five sub-sources: the spellings of its folder and its ``groundtruth.txt`` box convention."""

    name: str
    folders: tuple[str, ...]
    xywh: bool


FAMILIES = (
    TrackingFamily("GOT-10k", ("GOT-10k", "GOT10k", "got10k"), xywh=True),
    TrackingFamily("LaSOT", ("LaSOT", "lasot"), xywh=True),
    TrackingFamily("VID-Sentence", ("VID-Sentence", "VID_Sentence", "vid_sentence"), xywh=False),
    TrackingFamily("A2D-Sentences", ("A2D_sentences", "A2D-Sentences", "A2D_Sentences", "a2d_sentences"), xywh=False),
    TrackingFamily("HC-STVG", ("HC-STVG", "HC_STVG", "hc_stvg"), xywh=False),
)
_FIELDS = re.compile(r"[,\s]+")


def split_of(family: TrackingFamily, rel_parts: tuple[str, ...]) -> str:
    """The split a sample belongs to, from its path below the sub-source folder."""
    if family.name == "HC-STVG":
        return "val" if "Val_Images" in rel_parts else "train"
    lowered = [p.lower() for p in rel_parts]
    return "val" if "val" in lowered else "train"


def parse_groundtruth(path: Path, num_frames: int, xywh: bool) -> list[list[float] | None]:
    """Per-frame xyxy boxes (exclusive max, pixels) or None where the line is all zeros."""
    lines = [line for line in read_text(path).splitlines() if line.strip()]
    if len(lines) != num_frames:
        raise ItemError(path, f"{len(lines)} box lines for {num_frames} frames")
    boxes: list[list[float] | None] = []
    for line in lines:
        fields = [f for f in _FIELDS.split(line.strip()) if f][:4]
        try:
            values = [float(f) for f in fields] + [0.0] * (4 - len(fields))
        except ValueError:
            values = [0.0] * 4
        if any(math.isnan(v) for v in values):
            values = [0.0] * 4
        box = xywh_to_xyxy(values) if xywh else values
        boxes.append(None if box[2] <= box[0] or box[3] <= box[1] else box)
    return boxes


def read_caption(path: Path) -> str:
    return " ".join(line.strip() for line in read_text(path).splitlines() if line.strip())


def caption_targets(caption: str) -> tuple[str, list[str], str]:
    """(expression text, object ids, kind) from an ``nlp.txt`` caption."""
    phrases = parse_markup(caption)
    if not phrases:
        return caption, ["1"], "referring"
    firsts = []
    for phrase, ids in phrases:
        if not ids or not ids[0].isdigit():
            raise ValueError(f"phrase [{phrase}] has no numeric object id")
        firsts.append(str(int(ids[0])))
    if len(phrases) == 1:
        return strip_markup(caption), firsts, "referring"
    rewritten = iter(format_markup(phrase, [first]) for (phrase, _), first in zip(phrases, firsts))
    return MARKUP.sub(lambda _: next(rewritten), caption), list(dict.fromkeys(firsts)), "caption"


class MaskFolder:
    """SPARROW's mask lookup over one sample's ``mask/`` folder, listing each directory once."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._listing: dict[str, set[str]] = {}

    def _names(self, sub: str) -> set[str]:
        if sub not in self._listing:
            path = self.folder / sub if sub else self.folder
            self._listing[sub] = set(os.listdir(path)) if path.is_dir() else set()
        return self._listing[sub]

    def find(self, frame: Path, obj: str) -> Path:
        k = f"{int(obj):03d}"
        stem, name = frame.stem, frame.name
        for sub, candidate in (
            (k, f"{stem}.png"),
            ("", f"{stem}_{obj}.png"),
            ("", f"{stem}.png"),
            (k, f"{name}.png"),
            ("", f"{name}_{obj}.png"),
            ("", f"{name}.png"),
        ):
            if candidate in self._names(sub):
                return (self.folder / sub / candidate) if sub else (self.folder / candidate)
        raise ItemError(self.folder, f"no mask for object {obj} on frame {name} (one PNG per frame is required)")


def load_sample(ctx: LoadContext, family: TrackingFamily, folder: Path, key: str, split: str) -> VideoBundle:
    frames = sorted_frames(folder / "img")
    if not frames:
        raise ItemError(folder / "img", "no frames")
    height, width = image_size(frames[0])
    nlp = folder / "nlp.txt"
    caption = read_caption(nlp)
    if not caption:
        raise ItemError(nlp, "empty expression")
    try:
        text, object_ids, kind = caption_targets(caption)
    except ValueError as exc:
        raise ItemError(nlp, str(exc)) from None
    gt_path = folder / "groundtruth.txt"
    gt_boxes = parse_groundtruth(gt_path, len(frames), family.xywh)
    lookup = MaskFolder(folder / "mask")
    video_id = f"{ctx.source}/{key}"
    category = family_category(family, key)
    objects = []
    for n, obj in enumerate(object_ids):
        masks, boxes = [], []
        for frame in frames:
            png = lookup.find(frame, obj)
            mask = read_binary_png(png)
            if mask.shape != (height, width):
                raise ItemError(png, f"mask is {mask.shape[1]}x{mask.shape[0]}, frames are {width}x{height}")
            if mask.any():
                masks.append(encode_rle(mask))
                boxes.append(mask_to_box(mask))
            else:
                masks.append(None)
                boxes.append(None)
        if n == 0:
            boxes = gt_boxes
        objects.append(ObjectRecord(video_id, obj, category, masks, boxes))
    expression = ExpressionRecord(f"{video_id}/0", video_id, text, object_ids, kind)
    video = VideoRecord(
        video_id, ctx.source, split, [str(f) for f in frames], [f.stem for f in frames], height, width, FPS_UNKNOWN
    )
    return VideoBundle(video, objects, [expression], Provenance(str(nlp), str(folder / "mask"), str(gt_path)))


def family_category(family: TrackingFamily, key: str) -> str:
    """LaSOT names sequences ``<class>-<n>``; the other sub-sources name no category."""
    if family.name != "LaSOT":
        return ""
    seq = key.split("/")[-1]
    for part in reversed(key.split("/")):
        if "-" in part and part.rsplit("-", 1)[1].isdigit():
            seq = part
            break
    return seq.rsplit("-", 1)[0] if "-" in seq else ""


def is_sample(folder: Path, names: set[str]) -> bool:
    return (
        "img" in names
        and "mask" in names
        and "groundtruth.txt" in names
        and "nlp.txt" in names
        and (folder / "img").is_dir()
        and (folder / "mask").is_dir()
    )


def find_family_roots(root: Path) -> list[tuple[TrackingFamily, Path]]:
    """Sub-source folders under ``root/VOT_dataset`` or ``root``, or ``root`` itself when it is one."""
    own = next((f for f in FAMILIES if root.name in f.folders), None)
    if own is not None:
        return [(own, root)]
    found = []
    for family in FAMILIES:
        for base in (root / "VOT_dataset", root):
            hit = next((base / f for f in family.folders if (base / f).is_dir()), None)
            if hit is not None:
                found.append((family, hit))
                break
    return found


def iter_samples(base: Path) -> Iterator[tuple[Path, str]]:
    """(sample folder, path below ``base``) in sorted order, without descending into samples."""
    stack = [base]
    while stack:
        folder = stack.pop()
        try:
            names = set(os.listdir(folder))
        except OSError:
            continue
        if is_sample(folder, names):
            yield folder, folder.relative_to(base).as_posix()
            continue
        subdirs = sorted((n for n in names if (folder / n).is_dir()), reverse=True)
        stack.extend(folder / n for n in subdirs)


@register("tracking", SPLITS, "SPARROW VOT layout: GOT-10k, LaSOT, VID-Sentence, A2D-Sentences, HC-STVG")
def load_tracking(ctx: LoadContext) -> Iterator[VideoBundle]:
    families = find_family_roots(ctx.root)
    if not families:
        names = ", ".join(f.folders[0] for f in FAMILIES)
        raise DataError(f"{ctx.root}: no tracking source folder ({names}) here or under VOT_dataset/")
    ctx.layout = "VOT_dataset: " + ", ".join(f.name for f, _ in families)
    for family, base in families:
        for folder, rel in iter_samples(base):
            split = split_of(family, tuple(rel.split("/")))
            ctx.gt_splits[split] = True
            if not ctx.wants(split):
                continue
            key = f"{family.name}/{rel}"
            try:
                yield load_sample(ctx, family, folder, key, split)
            except MALFORMED as exc:
                ctx.skip(exc, split=split, item=f"{ctx.source}/{key}", file=folder)
