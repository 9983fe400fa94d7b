"""What every source loader yields, the registry of loaders, and the helpers they share.

A loader reads one dataset release exactly as it unpacks and *streams* :class:`VideoBundle` objects, one per
video: the :class:`~sparrow.data.records.VideoRecord`, its :class:`~sparrow.data.records.ObjectRecord` list and
its :class:`~sparrow.data.records.ExpressionRecord` list, already in the curated conventions (object ids as str,
boxes xyxy with an exclusive max in pixels, masks as COCO RLE with str counts or None). Frame paths in a bundle are
absolute; curation rewrites them relative to the curated folder.

Conventions a loader fills in where the release is silent:

- ``fps`` is ``0.0`` when the release does not state a frame rate (MeViS, ReVOS, the tracking layout, GCG).
- ``category`` is ``""`` when the release names no category (MeViS, ReVOS, GCG).
- A split without public ground truth (MeViS ``valid``, Ref-YouTube-VOS ``valid``/``test``) yields expressions
  with ``object_ids == []`` and no objects, and ``has_gt=False`` on the bundle; ``meta.json`` records it per split.
  In a split *with* ground truth, ``object_ids == []`` is a no-target expression (ReVOS robustness items).

Malformed input is reported through :meth:`LoadContext.skip`, which raises the :class:`DataError` (naming the file)
unless the run was started with ``skip_bad``, in which case the item is skipped and recorded for ``report.json``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sparrow.data.boxes import mask_to_box
from sparrow.data.qa_templates import unmark
from sparrow.data.records import ExpressionRecord, ObjectRecord, VideoRecord
from sparrow.data.rle import decode_rle, encode_rle
from sparrow.storage import DataError, read_json

FPS_UNKNOWN = 0.0


# What a loader catches around one item: its own errors, and the lookups that fail on a malformed entry. Not
# OSError: reading errors are already DataErrors naming the file, and a failing write (a full disk) is no bad item.
MALFORMED = (DataError, KeyError, TypeError, IndexError, AttributeError, ValueError)


class ItemError(DataError):
    """A malformed item: ``file`` is the file at fault, ``reason`` what is wrong with it."""

    def __init__(self, file: str | os.PathLike, reason: str):
        self.file = str(file)
        self.reason = reason
        super().__init__(f"{self.file}: {reason}")


@dataclass
class Provenance:
    """Files a bundle's records came from, so that a validation failure can name the file at fault."""

    expressions: str
    masks: str | None = None
    boxes: str | None = None


@dataclass
class VideoBundle:
    """One video and its records, as a loader yields them (frame paths absolute)."""

    video: VideoRecord
    objects: list[ObjectRecord]
    expressions: list[ExpressionRecord]
    provenance: Provenance
    has_gt: bool = True
    # Per-video additions to the report's per-split counts (e.g. ``boxes_nan``), added when the video is written.
    counts: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class FrameExtraction:
    """How frames are pulled out of mp4 releases (VidSTG, HC-STVG) into ``frames/<source>/<id>/``.

    ``fps=None`` keeps every decoded frame; a number keeps about that many frames per second (the evaluation
    protocols of VidSTG and HC-STVG sample 1 fps).
    """

    fps: float | None = None
    jpeg_quality: int = 95

    def __post_init__(self) -> None:
        if self.fps is not None and self.fps <= 0:
            raise ValueError(f"FrameExtraction.fps must be positive or None, got {self.fps}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"FrameExtraction.jpeg_quality must be in 1..100, got {self.jpeg_quality}")


@dataclass
class LoadContext:
    """Everything a loader needs besides its root: which splits, where to extract frames, how to treat bad items."""

    source: str
    root: Path
    frames_dir: Path
    splits: tuple[str, ...] | None = None
    skip_bad: bool = False
    extraction: FrameExtraction = field(default_factory=FrameExtraction)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    layout: str = ""
    gt_splits: dict[str, bool] = field(default_factory=dict)
    # Every split the release holds, as loaders ask :meth:`wants` about each split they find.
    release_splits: set[str] = field(default_factory=set)

    def wants(self, split: str) -> bool:
        self.release_splits.add(split)
        return self.splits is None or split in self.splits

    def skip(self, error: Exception, *, split: str | None, item: str, file: str | os.PathLike | None = None) -> None:
        """Record a malformed item and go on (``skip_bad``), or raise ``error`` (the default).

        A non-:class:`DataError` (a ``KeyError`` on an entry that lacks a field, say) becomes an :class:`ItemError`
        naming ``file``, so that every failure a loader lets through names the file it came from.
        """
        if not isinstance(error, DataError):
            wrapped = ItemError(
                file if file is not None else self.root, f"malformed entry {item} ({type(error).__name__}: {error})"
            )
            if not self.skip_bad:
                raise wrapped from error
            error = wrapped
        if not self.skip_bad:
            raise error
        if isinstance(error, ItemError):
            file, reason = error.file, error.reason
        else:
            reason = str(error)
        self.skipped.append(
            {
                "source": self.source,
                "split": split,
                "item": item,
                "file": None if file is None else str(file),
                "reason": reason,
            }
        )

    def read_json_of(self, path: Path, kind: type, expected: str, *, split: str | None, item: str) -> Any | None:
        """``path`` read as JSON whose top level is a ``kind``; a malformed file goes through :meth:`skip`
        (``expected`` says what it should hold) and gives None."""
        try:
            data = read_release_json(path)
            if not isinstance(data, kind):
                raise ItemError(path, expected)
        except MALFORMED as exc:
            self.skip(exc, split=split, item=item, file=path)
            return None
        return data

    def annotation_files(
        self, splits: tuple[str, ...], find: Callable[[Path, str], Path | None], missing: str, layout: str
    ) -> dict[str, Path]:
        """``{split: file}`` for the splits whose annotation file ``find(root, split)`` locates; sets ``layout``.
        None found raises :class:`DataError` (``missing`` says what was looked for)."""
        found = {s: find(self.root, s) for s in splits}
        found = {s: p for s, p in found.items() if p is not None}
        if not found:
            raise DataError(f"{self.root}: {missing}")
        self.layout = layout
        return found

    def split_annotations(self, found: dict[str, Path], kind: type, expected: str) -> Iterator[tuple[str, Path, Any]]:
        """(split, file, content) of each wanted split of :meth:`annotation_files`, marked as having ground truth;
        a malformed file is skipped as one bad item (:meth:`read_json_of`)."""
        for split, path in found.items():
            if not self.wants(split):
                continue
            self.gt_splits[split] = True
            data = self.read_json_of(path, kind, expected, split=split, item=f"{self.source}/{split}")
            if data is not None:
                yield split, path, data

    def frames_for(self, video_key: str) -> Path:
        """The extraction folder of one mp4-backed video."""
        return self.frames_dir / safe_name(video_key)


Loader = Callable[[LoadContext], Iterator[VideoBundle]]


@dataclass(frozen=True)
class SourceSpec:
    """A registered source: its NAME on the command line, the splits its release can hold, and its loader."""

    name: str
    splits: tuple[str, ...]
    load: Loader
    summary: str


REGISTRY: dict[str, SourceSpec] = {}


def register(name: str, splits: tuple[str, ...], summary: str) -> Callable[[Loader], Loader]:
    def decorate(load: Loader) -> Loader:
        if name in REGISTRY:
            raise ValueError(f"source {name!r} registered twice")
        REGISTRY[name] = SourceSpec(name, splits, load, summary)
        return load

    return decorate


def get_source(name: str) -> SourceSpec:
    import sparrow.data.sources  # noqa: F401  (importing the package registers every loader)

    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown source {name!r}; choose one of {', '.join(sorted(REGISTRY))}") from None


# -- small readers -----------------------------------------------------------------------------------------------

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(key: str) -> str:
    """A folder name for a source key that may hold slashes or odd characters (``MOSE/abc``, ``x.mp4``)."""
    return _SAFE.sub("_", key).strip("._") or "_"


class _DuplicateKey(Exception):
    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return out


def read_release_json(path: str | os.PathLike) -> Any:
    """A release's JSON file, refusing duplicate keys in any object: ``json`` keeps the last of them, so a repeated
    expression id or ``anno_id`` would silently drop an entry. The error names the file and the key."""
    try:
        return read_json(path, object_pairs_hook=_unique_pairs)
    except _DuplicateKey as exc:
        raise ItemError(path, f"duplicate key {exc.key!r} in a JSON object (json would keep only the last)") from None


def read_text(path: Path, encoding: str = "utf-8") -> str:
    try:
        return path.read_bytes().decode(encoding)
    except FileNotFoundError:
        raise ItemError(path, "file not found") from None
    except UnicodeDecodeError as exc:
        raise ItemError(path, f"not valid {encoding} text ({exc.reason} at byte {exc.start})") from None


def image_size(path: Path) -> tuple[int, int]:
    """(H, W) from the image header, without decoding the pixels."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            width, height = img.size
    except FileNotFoundError:
        raise ItemError(path, "missing frame") from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ItemError(path, f"unreadable image ({exc})") from None
    return height, width


def read_index_png(path: Path) -> np.ndarray:
    """Raw palette indices of a YouTube-VOS / DAVIS annotation (never the luminance of the palette colour)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            if img.mode not in ("P", "L", "1", "I", "I;16"):
                raise ItemError(path, f"expected a palette (mode P) index PNG, got mode {img.mode}")
            return np.asarray(img)
    except FileNotFoundError:
        raise ItemError(path, "missing annotation PNG") from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ItemError(path, f"unreadable annotation PNG ({exc})") from None


def read_binary_png(path: Path) -> np.ndarray:
    """A 0/255 mask PNG as bool. Grayscale is binarised at > 127 (SPARROW's rule); a palette PNG by raw index != 0,
    because its luminance depends on the palette colours."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            if img.mode == "P":
                return np.asarray(img) != 0
            return np.asarray(img.convert("L")) > 127
    except FileNotFoundError:
        raise ItemError(path, "missing mask PNG") from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ItemError(path, f"unreadable mask PNG ({exc})") from None


# -- masks and boxes ---------------------------------------------------------------------------------------------


def rle_total(counts: str | bytes) -> int:
    """Number of pixels a compressed COCO RLE string covers (-1 if it does not parse).

    pycocotools decodes a corrupt string without complaint (it writes whatever runs it reads), so the total is
    the check that the counts really describe an ``H x W`` mask.
    """
    data = counts.encode("ascii") if isinstance(counts, str) else bytes(counts)
    runs: list[int] = []
    total = 0
    pos, end = 0, len(data)
    while pos < end:
        value, shift, more = 0, 0, True
        while more:
            if pos >= end:
                return -1
            c = data[pos] - 48
            if c < 0 or c > 63:
                return -1
            value |= (c & 0x1F) << shift
            more = bool(c & 0x20)
            pos += 1
            shift += 5
            if not more and (c & 0x10):
                value |= -1 << shift
        if len(runs) > 2:
            value += runs[-2]
        if value < 0:
            return -1
        runs.append(value)
        total += value
    return total


def check_rle(rle: Any, shape: tuple[int, int]) -> str | None:
    """Why ``rle`` (one frame, any variant) is not a valid mask of ``shape``, or None if it is."""
    items = rle if isinstance(rle, list) else [rle]
    for item in items:
        if not isinstance(item, dict) or "size" not in item or "counts" not in item:
            return f"not a COCO RLE dict ({str(item)[:60]})"
        try:
            size = (int(item["size"][0]), int(item["size"][1]))
        except (TypeError, ValueError, IndexError):
            return f"RLE size {item['size']!r} is not [H, W]"
        if size != tuple(shape):
            return f"RLE of size {size[0]}x{size[1]} for a {shape[0]}x{shape[1]} frame"
        counts = item["counts"]
        if isinstance(counts, list):
            total = sum(counts) if all(isinstance(c, int) and c >= 0 for c in counts) else -1
        elif isinstance(counts, (str, bytes, bytearray)):
            total = rle_total(counts)
        else:
            return f"RLE counts of type {type(counts).__name__}"
        if total != size[0] * size[1]:
            return f"RLE counts cover {total} pixels, not {size[0]}x{size[1]}={size[0] * size[1]}"
    return None


def mask_track(mask: np.ndarray | None) -> tuple[dict | None, list[float] | None]:
    """(RLE, box) of one frame's mask; an empty or missing mask is an absent object: (None, None)."""
    if mask is None or not mask.any():
        return None, None
    return encode_rle(mask), mask_to_box(mask)


def rle_track(
    rle: Any, shape: tuple[int, int], file: str | os.PathLike, what: str
) -> tuple[dict | None, list[float] | None]:
    """Canonical (RLE with str counts, exclusive-max box) of one frame given in any RLE variant.

    ``None``, empty lists and empty masks are absent; a list of RLEs is OR-ed (ReVOS, SA-V). An RLE that is not a valid
    ``shape`` mask raises :class:`ItemError` naming ``file`` and ``what``.
    """
    if rle is None or (isinstance(rle, list) and not rle):
        return None, None
    problem = check_rle(rle, shape)
    if problem:
        raise ItemError(file, f"{what}: {problem}")
    if isinstance(rle, dict) and isinstance(rle["counts"], str):
        from pycocotools import mask as mask_utils

        # A compressed str RLE is already canonical: its box comes from the RLE without decoding the mask.
        x, y, w, h = (float(v) for v in mask_utils.toBbox({"size": rle["size"], "counts": rle["counts"].encode()}))
        if w <= 0 or h <= 0:
            return None, None  # an empty mask is an absent object, as null is
        return {"size": [int(shape[0]), int(shape[1])], "counts": rle["counts"]}, [x, y, x + w, y + h]
    try:
        mask = decode_rle(rle, shape)
    except ValueError as exc:
        raise ItemError(file, f"{what}: {exc}") from None
    return mask_track(mask)


def grounded_caption(
    video_id: str, exp_id: str, marked: str, frame_span: list[int] | None = None
) -> list[ExpressionRecord]:
    """A caption marked up as ``[phrase](ids)`` as curated records: the caption (kind ``caption``: plain text, its
    phrase spans and the ids of every phrase) followed by one ``referring`` expression per phrase (the phrase's
    text and ids, id ``<caption id>/p<k>``), so that each phrase is linked to its objects on its own too. A phrase
    with several ids refers to their union (docs/data-formats.md §2.4)."""
    text, phrases = unmark(marked)
    caption_id = f"{video_id}/{exp_id}"
    ids = list(dict.fromkeys(i for p in phrases for i in p["object_ids"]))
    out = [ExpressionRecord(caption_id, video_id, text, ids, "caption", frame_span, phrases)]
    for k, p in enumerate(phrases):
        phrase = text[p["start"] : p["end"]]
        out.append(
            ExpressionRecord(f"{caption_id}/p{k}", video_id, phrase, list(p["object_ids"]), "referring", frame_span)
        )
    return out


def xywh_to_xyxy(box: list[float]) -> list[float]:
    x, y, w, h = (float(v) for v in box[:4])
    return [x, y, x + w, y + h]


def sorted_frames(folder: Path, suffixes: tuple[str, ...] = (".jpg", ".jpeg", ".png")) -> list[Path]:
    """Image files of a frame folder, sorted by file name (names are not positions, but their order is)."""
    try:
        names = sorted(n for n in os.listdir(folder) if n.lower().endswith(suffixes))
    except FileNotFoundError:
        raise ItemError(folder, "frame folder not found") from None
    return [folder / n for n in names]
