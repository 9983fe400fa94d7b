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
  referenced object; other objects get boxes from their masks. Lines holding a NaN are counted (``boxes_nan`` in
  ``report.json``), so that a target made absent by a NaN is never silent.
- ``nlp.txt``: non-empty lines stripped and joined by spaces. Without markup the caption refers to object ``1``
  (one referring expression). With ``[phrase](ids)`` markup it is a grounded caption: the caption plus one
  referring expression per phrase (:func:`~sparrow.data.sources.base.grounded_caption`), a phrase referring to the
  union of its ids. SPARROW's loader reads only the first id of each phrase, so a release guarantees masks for
  first ids only (found through the whole lookup above); a further id needs masks of its own (``mask/kkk/`` or
  ``mask/S_k.png``) and is dropped from its phrase, with a note in the report, when it has none.
- Symbolic links are followed, but never twice: a link to a folder above it (a loop) or into one of the released
  trees being read (which would read those samples again, perhaps under another sub-source's box convention) is
  a bad item naming the link, and a folder reached again through another link is a bad item too.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sparrow.data.boxes import mask_to_box
from sparrow.data.qa_templates import MARKUP, format_markup, parse_markup
from sparrow.data.records import ExpressionRecord, ObjectRecord, VideoRecord
from sparrow.data.rle import encode_rle
from sparrow.data.sources.base import (
    FPS_UNKNOWN,
    MALFORMED,
    ItemError,
    LoadContext,
    Provenance,
    VideoBundle,
    grounded_caption,
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


def parse_groundtruth(path: Path, num_frames: int, xywh: bool) -> tuple[list[list[float] | None], int]:
    """Per-frame xyxy boxes (exclusive max, pixels) or None where the line is all zeros, and the number of lines
    that held a NaN (read as zeros, as SPARROW's loader does)."""
    lines = [line for line in read_text(path).splitlines() if line.strip()]
    if len(lines) != num_frames:
        raise ItemError(path, f"{len(lines)} box lines for {num_frames} frames")
    boxes: list[list[float] | None] = []
    nan_lines = 0
    for line in lines:
        fields = [f for f in _FIELDS.split(line.strip()) if f][:4]
        try:
            values = [float(f) for f in fields] + [0.0] * (4 - len(fields))
        except ValueError:
            values = [0.0] * 4
        if any(math.isnan(v) for v in values):
            nan_lines += 1
            values = [0.0] * 4
        box = xywh_to_xyxy(values) if xywh else values
        boxes.append(None if box[2] <= box[0] or box[3] <= box[1] else box)
    return boxes, nan_lines


def read_caption(path: Path) -> str:
    return " ".join(line.strip() for line in read_text(path).splitlines() if line.strip())


def caption_phrases(caption: str) -> list[tuple[str, list[str]]]:
    """(phrase, ids as canonical digit strings) of a marked-up ``nlp.txt`` caption ([] without markup)."""
    phrases = []
    for phrase, ids in parse_markup(caption):
        if not ids or not all(i.isdigit() for i in ids):
            raise ValueError(f"phrase [{phrase}]({', '.join(ids)}) needs numeric object ids")
        phrases.append((phrase, list(dict.fromkeys(str(int(i)) for i in ids))))
    return phrases


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

    def has_own_masks(self, obj: str) -> bool:
        """Whether object ``obj`` has masks of its own (``mask/kkk/`` or ``mask/*_k.png``), not only the
        single-object fallbacks ``mask/S.png``."""
        return bool(self._names(f"{int(obj):03d}")) or any(n.endswith(f"_{obj}.png") for n in self._names(""))

    def find(self, frame: Path, obj: str, own_only: bool = False) -> Path:
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
            if own_only and not sub and not candidate.endswith(f"_{obj}.png"):
                continue
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
        phrases = caption_phrases(caption)
    except ValueError as exc:
        raise ItemError(nlp, str(exc)) from None
    lookup = MaskFolder(folder / "mask")
    video_id = f"{ctx.source}/{key}"
    firsts = {ids[0] for _, ids in phrases}
    if phrases:
        kept = [[ids[0], *(i for i in ids[1:] if i in firsts or lookup.has_own_masks(i))] for _, ids in phrases]
        dropped = sum(len(ids) for _, ids in phrases) - sum(len(ids) for ids in kept)
        if dropped:
            ctx.notes.append(f"{nlp}: {dropped} phrase id(s) without masks of their own kept out of their phrase")
        rewritten = iter(format_markup(phrase, ids) for (phrase, _), ids in zip(phrases, kept))
        expressions = grounded_caption(video_id, "0", MARKUP.sub(lambda _: next(rewritten), caption))
        object_ids = expressions[0].object_ids
    else:
        object_ids = ["1"]
        firsts = {"1"}
        expressions = [ExpressionRecord(f"{video_id}/0", video_id, caption, object_ids, "referring")]
    gt_path = folder / "groundtruth.txt"
    gt_boxes, nan_lines = parse_groundtruth(gt_path, len(frames), family.xywh)
    category = family_category(family, key)
    objects = []
    for n, obj in enumerate(object_ids):
        masks, boxes = [], []
        for frame in frames:
            png = lookup.find(frame, obj, own_only=obj not in firsts)
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
    video = VideoRecord(
        video_id, ctx.source, split, [str(f) for f in frames], [f.stem for f in frames], height, width, FPS_UNKNOWN
    )
    return VideoBundle(
        video,
        objects,
        expressions,
        Provenance(str(nlp), str(folder / "mask"), str(gt_path)),
        counts={"boxes_nan": nan_lines},
    )


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


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def iter_samples(base: Path, trees: list[str]) -> Iterator[tuple[Path, str, str | None]]:
    """(sample folder, path below ``base``, problem) in sorted order, without descending into samples.

    Symbolic links to folders are followed once: a link to a folder above it, or into one of ``trees`` (the real
    paths of the released trees being read, where its target is read anyway), or to a folder already reached is
    yielded with the problem instead of being read.
    """
    stack = [base]
    reached = {os.path.realpath(base): ""}
    while stack:
        folder = stack.pop()
        try:
            names = set(os.listdir(folder))
        except OSError:
            continue
        if is_sample(folder, names):
            yield folder, folder.relative_to(base).as_posix(), None
            continue
        here = os.path.realpath(folder)
        below = []
        for name in sorted(n for n in names if (folder / n).is_dir()):
            path = folder / name
            rel = path.relative_to(base).as_posix()
            real = os.path.realpath(path)
            problem = None
            if path.is_symlink():
                if _inside(here, real):
                    problem = f"symbolic link to {real}, a folder above it (a loop)"
                elif any(_inside(real, tree) for tree in trees):
                    problem = f"symbolic link to {real}, inside the release being read (its samples are read there)"
            if problem is None and real in reached:
                problem = f"reaches {real} again (already read as {reached[real] or '.'})"
            if problem is not None:
                yield path, rel, problem
                continue
            reached[real] = rel
            below.append(path)
        stack.extend(reversed(below))


@register("tracking", SPLITS, "SPARROW VOT layout: GOT-10k, LaSOT, VID-Sentence, A2D-Sentences, HC-STVG")
def load_tracking(ctx: LoadContext) -> Iterator[VideoBundle]:
    families = find_family_roots(ctx.root)
    if not families:
        names = ", ".join(f.folders[0] for f in FAMILIES)
        raise DataError(f"{ctx.root}: no tracking source folder ({names}) here or under VOT_dataset/")
    ctx.layout = "VOT_dataset: " + ", ".join(f.name for f, _ in families)
    trees = [os.path.realpath(base) for _, base in families]
    for family, base in families:
        for folder, rel, problem in iter_samples(base, trees):
            split = split_of(family, tuple(rel.split("/")))
            ctx.gt_splits[split] = True
            if not ctx.wants(split):
                continue
            key = f"{family.name}/{rel}"
            try:
                if problem is not None:
                    raise ItemError(folder, problem)
                yield load_sample(ctx, family, folder, key, split)
            except MALFORMED as exc:
                ctx.skip(exc, split=split, item=f"{ctx.source}/{key}", file=folder)
