"""Curation: harmonise any subset of the sources into one referential video dataset.

``curate`` streams every source's :class:`~sparrow.data.sources.VideoBundle` s, validates each record, removes
duplicate expressions, generates Q&A pairs (:mod:`sparrow.data.qa_templates`) and writes the curated folder
(``videos.jsonl``, ``objects.jsonl``, ``expressions.jsonl``, ``qa.jsonl``, ``meta.json``, ``report.json``; schema in
:mod:`sparrow.data.records`). The folder is built under a temporary sibling (``.<out>.tmp-<pid>``, locked for the
run's lifetime) and renamed into place, so a failed or killed run leaves either the previous dataset or nothing
where readers look; the next run removes what a killed run left beside it (:func:`remove_stale_temporaries`).
``splits`` naming a split a source does not have is an error, not an empty dataset.

Validation (each failure names the file at fault): every frame exists, decodes and has the video's size; masks
are valid COCO RLE of the frame size; boxes are finite, non-empty and inside the frame (a box overhanging by at
most ``BOX_TOLERANCE`` of the frame side is clipped and counted, as SPARROW's loader clamps; beyond that it is an
error); per-frame lists match the frame count; every expression has text and a known kind, and every object it
refers to exists; ``frame_span`` lies inside the video; a grounded caption's phrase spans lie in its plain text,
in order, each naming some of its referents (:func:`phrase_problem`). Bad items raise :class:`~sparrow.storage.DataError`
unless ``skip_bad``, which skips them and lists each in ``report.json`` with file and reason.

Duplicates (same video, same normalised text, same referents and span) are removed from training splits and
listed in the report. In held-out splits they are kept, also listed: benchmark protocols score every released
expression (Ref-DAVIS17 even scores per annotator slot), so dropping one would change the benchmark.

``meta.json``: ``format_version``, ``seed``, ``splits`` (the filter, or null), package ``versions``, and per source
its ``root``, detected ``layout``, curated ``splits`` and ``ground_truth`` (split -> whether the release has masks
or boxes for it; False means ``object_ids == []`` is "unknown", not "no target"). ``report.json``: ``totals`` and,
per source, ``splits`` -> counts (videos, frames, objects, masks, boxes, expressions, qa, duplicates_removed,
duplicates_kept, skipped, boxes_nan: box lines holding a NaN, read as target absent), ``totals``, ``layout``,
``notes``, ``seconds``; then ``skipped`` (every skipped item: source, split, item, file, reason), ``duplicates``
(item, duplicate_of, removed) and ``removed_temporaries`` (what killed runs had left).
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import math
import os
import re
import shutil
import sys
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sparrow.data.qa_templates import TARGET_JOIN, make_qa, normalise_text, parse_markup
from sparrow.data.records import EXPRESSION_KINDS, SPLITS, ExpressionRecord, ObjectRecord
from sparrow.data.sources import SOURCE_NAMES, FrameExtraction, ItemError, LoadContext, VideoBundle, get_source
from sparrow.data.sources.base import check_rle
from sparrow.storage import DataError, atomic_write_json, read_json

OUTPUT_FILES = ("videos.jsonl", "objects.jsonl", "expressions.jsonl", "qa.jsonl")
FORMAT_VERSION = 2  # 2: grounded captions as plain text with phrase spans
BOX_TOLERANCE = 0.05
TRAIN_SPLITS = ("train",)


# -- report ------------------------------------------------------------------------------------------------------


def _zero_counts() -> dict[str, int]:
    return {
        "videos": 0,
        "frames": 0,
        "objects": 0,
        "masks": 0,
        "boxes": 0,
        "expressions": 0,
        "qa": 0,
        "duplicates_removed": 0,
        "duplicates_kept": 0,
        "skipped": 0,
        "boxes_nan": 0,
    }


@dataclass
class CurationReport:
    """What a curation run wrote and left out; ``to_json()`` is ``report.json``."""

    out: Path
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    duplicates: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    removed_temporaries: list[str] = field(default_factory=list)

    def counts(self, source: str, split: str) -> dict[str, int]:
        entry = self.sources[source]
        return entry["splits"].setdefault(split, _zero_counts())

    def source_totals(self, source: str) -> dict[str, int]:
        totals = _zero_counts()
        for counts in self.sources[source]["splits"].values():
            for k, v in counts.items():
                totals[k] += v
        # Some skipped items (a whole annotation file) belong to no split; the source-level count has them all.
        totals["skipped"] = self.sources[source].get("skipped", totals["skipped"])
        totals["boxes_clipped"] = self.sources[source].get("boxes_clipped", 0)
        return totals

    @property
    def totals(self) -> dict[str, int]:
        totals = {**_zero_counts(), "boxes_clipped": 0}
        for name in self.sources:
            for k, v in self.source_totals(name).items():
                totals[k] += v
        return totals

    def to_json(self) -> dict[str, Any]:
        sources = {}
        for name, entry in self.sources.items():
            sources[name] = {**entry, "totals": self.source_totals(name)}
        return {
            "format_version": FORMAT_VERSION,
            "totals": self.totals,
            "sources": sources,
            "skipped": self.skipped,
            "duplicates": self.duplicates,
            "removed_temporaries": self.removed_temporaries,
            "seconds": round(self.seconds, 3),
        }

    def summary(self) -> str:
        lines = [f"{'source':<16}{'videos':>8}{'expr':>8}{'qa':>8}{'objects':>9}{'masks':>9}{'skipped':>9}"]
        for name in self.sources:
            t = self.source_totals(name)
            lines.append(
                f"{name:<16}{t['videos']:>8}{t['expressions']:>8}{t['qa']:>8}{t['objects']:>9}{t['masks']:>9}"
                f"{t['skipped']:>9}"
            )
        t = self.totals
        lines.append(
            f"{'total':<16}{t['videos']:>8}{t['expressions']:>8}{t['qa']:>8}{t['objects']:>9}{t['masks']:>9}"
            f"{t['skipped']:>9}"
        )
        return "\n".join(lines)


# -- validation --------------------------------------------------------------------------------------------------


def verify_frame(path: str, shape: tuple[int, int]) -> str | None:
    """Why a frame file is unusable (missing, corrupt, wrong size), or None. Decodes the whole image."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            size = (img.height, img.width)
            img.load()
    except FileNotFoundError:
        return "missing frame"
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        return f"corrupt frame ({exc})"
    if size != tuple(shape):
        return f"frame is {size[1]}x{size[0]}, the video is {shape[1]}x{shape[0]}"
    return None


def check_box(box: Any, height: int, width: int) -> tuple[list[float] | None, bool, str | None]:
    """(box clipped to the frame, whether it was clipped, problem)."""
    if box is None:
        return None, False, None
    if not isinstance(box, (list, tuple)) or len(box) != 4:
        return None, False, f"box {box!r} is not [x0, y0, x1, y1]"
    try:
        x0, y0, x1, y1 = (float(v) for v in box)
    except (TypeError, ValueError):
        return None, False, f"box {box!r} is not numeric"
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
        return None, False, f"box {box!r} is not finite"
    if x1 <= x0 or y1 <= y0:
        return None, False, f"box {box!r} is empty (needs x0 < x1, y0 < y1)"
    tol_x, tol_y = BOX_TOLERANCE * width, BOX_TOLERANCE * height
    if x0 < -tol_x or y0 < -tol_y or x1 > width + tol_x or y1 > height + tol_y:
        return None, False, f"box {[x0, y0, x1, y1]} outside the {width}x{height} frame"
    clipped = [max(0.0, x0), max(0.0, y0), min(float(width), x1), min(float(height), y1)]
    if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
        return None, False, f"box {[x0, y0, x1, y1]} outside the {width}x{height} frame"
    return clipped, clipped != [x0, y0, x1, y1], None


class Validator:
    """Checks one bundle at a time; drops bad frames/objects/expressions through the load context."""

    def __init__(self, ctx: LoadContext, pool: ThreadPoolExecutor | None):
        self.ctx = ctx
        self.pool = pool
        self.boxes_clipped = 0

    def _skip(self, error: DataError, split: str, item: str) -> None:
        self.ctx.skip(error, split=split, item=item)

    def video_ok(self, bundle: VideoBundle) -> bool:
        video = bundle.video
        split = video.split
        try:
            if not video.frame_paths:
                raise ItemError(bundle.provenance.expressions, f"video {video.video_id} has no frames")
            if len(video.frame_names) != len(video.frame_paths):
                raise ItemError(
                    bundle.provenance.expressions, f"video {video.video_id}: frame names and paths differ in number"
                )
            if video.height <= 0 or video.width <= 0:
                raise ItemError(video.frame_paths[0], f"video {video.video_id}: size {video.width}x{video.height}")
            if split not in SPLITS:
                raise ItemError(bundle.provenance.expressions, f"video {video.video_id}: unknown split {split!r}")
            shape = (video.height, video.width)
            paths = video.frame_paths
            if self.pool is not None and len(paths) > 4:
                problems = self.pool.map(verify_frame, paths, [shape] * len(paths), chunksize=8)
            else:
                problems = (verify_frame(p, shape) for p in paths)
            for path, problem in zip(paths, problems):
                if problem:
                    raise ItemError(path, f"{problem} (video {video.video_id})")
        except DataError as exc:
            self._skip(exc, split, video.video_id)
            return False
        return True

    def objects(self, bundle: VideoBundle) -> list[ObjectRecord]:
        video = bundle.video
        n, shape = video.num_frames, (video.height, video.width)
        mask_file = bundle.provenance.masks or bundle.provenance.expressions
        box_file = bundle.provenance.boxes or mask_file
        kept: dict[str, ObjectRecord] = {}
        for obj in bundle.objects:
            item = f"{video.video_id}/object {obj.object_id}"
            try:
                if not isinstance(obj.object_id, str) or not obj.object_id or TARGET_JOIN in obj.object_id:
                    raise ItemError(mask_file, f"{item}: object id must be a non-empty str without '{TARGET_JOIN}'")
                if obj.object_id in kept:
                    raise ItemError(mask_file, f"{item}: object id listed twice")
                if len(obj.masks) != n:
                    raise ItemError(mask_file, f"{item}: {len(obj.masks)} masks for {n} frames")
                if len(obj.boxes) != n:
                    raise ItemError(box_file, f"{item}: {len(obj.boxes)} boxes for {n} frames")
                for t, rle in enumerate(obj.masks):
                    if rle is not None:
                        problem = check_rle(rle, shape)
                        if problem:
                            raise ItemError(mask_file, f"{item} frame {t}: {problem}")
                boxes = []
                for t, box in enumerate(obj.boxes):
                    fixed, clipped, problem = check_box(box, *shape)
                    if problem:
                        raise ItemError(box_file, f"{item} frame {t}: {problem}")
                    self.boxes_clipped += clipped
                    boxes.append(fixed)
                obj.boxes = boxes
                kept[obj.object_id] = obj
            except DataError as exc:
                self._skip(exc, video.split, item)
        return list(kept.values())

    def expressions(self, bundle: VideoBundle, object_ids: set[str]) -> list[ExpressionRecord]:
        video = bundle.video
        file = bundle.provenance.expressions
        kept: list[ExpressionRecord] = []
        seen: set[str] = set()
        for exp in bundle.expressions:
            item = exp.expression_id
            try:
                if exp.expression_id in seen:
                    raise ItemError(file, f"expression id {item} listed twice")
                if not isinstance(exp.text, str) or not exp.text.strip():
                    raise ItemError(file, f"expression {item}: empty expression")
                if exp.kind not in EXPRESSION_KINDS:
                    raise ItemError(file, f"expression {item}: unknown kind {exp.kind!r}")
                unknown = [o for o in exp.object_ids if o not in object_ids]
                if unknown:
                    raise ItemError(file, f"expression {item}: unknown object id {', '.join(map(repr, unknown))}")
                problem = phrase_problem(exp)
                if problem:
                    raise ItemError(file, f"expression {item}: {problem}")
                if exp.frame_span is not None:
                    span = exp.frame_span
                    if len(span) != 2 or not 0 <= span[0] < span[1] <= video.num_frames:
                        raise ItemError(file, f"expression {item}: frame_span {span} outside [0, {video.num_frames})")
                seen.add(exp.expression_id)
                kept.append(exp)
            except DataError as exc:
                self._skip(exc, video.split, item)
        return kept


def phrase_problem(exp: ExpressionRecord) -> str | None:
    """Why a grounded caption's phrase spans break the records contract (docs/data-formats.md §10), or None."""
    if exp.kind == "caption" and parse_markup(exp.text):
        return "caption text still holds [phrase](ids) markup"
    if exp.phrases is None:
        return None
    if exp.kind != "caption":
        return f"phrase spans on a {exp.kind!r} expression (only captions have them)"
    end = 0
    for p in exp.phrases:
        if not isinstance(p, dict) or not {"start", "end", "object_ids"} <= set(p):
            return f"phrase span {p!r} is not {{start, end, object_ids}}"
        start, stop, ids = p["start"], p["end"], p["object_ids"]
        if not (isinstance(start, int) and isinstance(stop, int) and end <= start < stop <= len(exp.text)):
            return f"phrase span [{start}, {stop}) is not inside the text after the previous one"
        if not exp.text[start:stop].strip():
            return f"phrase span [{start}, {stop}) is blank"
        if not isinstance(ids, list) or not ids or not set(ids) <= set(exp.object_ids):
            return f"phrase [{exp.text[start:stop]}] ids {ids!r} are not among the caption's referents"
        end = stop
    return None


def dedup_key(exp: ExpressionRecord) -> tuple:
    return (
        normalise_text(exp.text),
        tuple(sorted(exp.object_ids)),
        None if exp.frame_span is None else tuple(exp.frame_span),
        tuple((p["start"], p["end"], tuple(p["object_ids"])) for p in exp.phrases or []),
    )


# -- writing -----------------------------------------------------------------------------------------------------


class _RelPaths:
    """Frame paths relative to the curated folder, resolving each frame directory once."""

    def __init__(self, start: Path):
        self.start = os.path.realpath(start)
        self._dirs: dict[str, str] = {}

    def __call__(self, path: str) -> str:
        head, tail = os.path.split(path)
        rel = self._dirs.get(head)
        if rel is None:
            rel = os.path.relpath(os.path.realpath(head), self.start)
            if len(self._dirs) > 4096:
                self._dirs.clear()
            self._dirs[head] = rel
        return f"{rel}/{tail}" if rel != "." else tail


def _dump(handle, row: dict) -> None:
    handle.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")))
    handle.write("\n")


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("sparrow-kit", "numpy", "pillow", "pycocotools", "av"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "absent"
    return out


def _parse_splits(splits: Iterable[str] | None) -> tuple[str, ...] | None:
    if splits is None:
        return None
    chosen = tuple(splits)
    unknown = [s for s in chosen if s not in SPLITS]
    if unknown:
        raise ValueError(f"unknown split(s) {', '.join(unknown)}; choose from {', '.join(SPLITS)}")
    return chosen


def _is_curated(folder: Path) -> bool:
    return (folder / "meta.json").is_file() and (folder / "videos.jsonl").is_file()


def curate(
    sources: dict[str, Path],
    out: Path,
    splits: list[str] | None = None,
    skip_bad: bool = False,
    *,
    seed: int = 0,
    extraction: FrameExtraction | None = None,
    workers: int = 2,
    extra_meta: dict[str, Any] | None = None,
) -> CurationReport:
    """Curate ``sources`` (NAME -> release root) into ``out``; returns the report also written to ``report.json``.

    ``splits`` limits every source to those split names (None: all). ``seed`` drives the Q&A template choice.
    ``workers`` threads decode frames for validation (PIL releases the GIL while decoding).
    """
    started = time.perf_counter()
    if not sources:
        raise ValueError("curate needs at least one source")
    specs = {name: get_source(name) for name in sources}
    wanted = _parse_splits(splits)
    for name, spec in specs.items():
        if wanted and not set(wanted) & set(spec.splits):
            raise DataError(
                f"{sources[name]}: source {name} has no split {', '.join(wanted)} (its splits: {', '.join(spec.splits)})"
            )
    roots = {}
    for name, root in sources.items():
        root = Path(root)
        if not root.is_dir():
            raise DataError(f"{root}: source root of {name} is not a folder")
        roots[name] = root
    out = Path(os.path.abspath(out))
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is not a folder")
    if out.exists() and not _is_curated(out) and any(out.iterdir()):
        raise DataError(f"{out}: exists and is not a curated dataset; refusing to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    removed = remove_stale_temporaries(out)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    lock = _hold_lock(tmp)
    report = CurationReport(out=out, removed_temporaries=[p.name for p in removed])
    extraction = extraction or FrameExtraction()
    meta: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "seed": seed,
        "splits": list(wanted) if wanted else None,
        "versions": _versions(),
        "sources": {},
    }
    if extra_meta:
        meta.update(extra_meta)
    pool = ThreadPoolExecutor(max_workers=workers) if workers > 1 else None
    try:
        rel = _RelPaths(tmp)
        handles = {name: open(tmp / name, "w", encoding="utf-8") for name in OUTPUT_FILES}
        try:
            seen_videos: set[str] = set()
            for name, spec in specs.items():
                ctx = LoadContext(
                    source=name,
                    root=roots[name],
                    frames_dir=tmp / "frames" / name,
                    splits=wanted,
                    skip_bad=skip_bad,
                    extraction=extraction,
                )
                report.sources[name] = {"root": os.path.realpath(roots[name]), "splits": {}}
                source_started = time.perf_counter()
                _curate_source(ctx, spec.load(ctx), Validator(ctx, pool), handles, rel, report, seen_videos, seed)
                if wanted and not set(wanted) & ctx.release_splits:
                    held = ", ".join(sorted(ctx.release_splits)) or "none"
                    raise DataError(f"{roots[name]}: {name} release has no split {', '.join(wanted)} (it holds {held})")
                entry = report.sources[name]
                entry.update(layout=ctx.layout, notes=ctx.notes, seconds=round(time.perf_counter() - source_started, 3))
                report.skipped.extend(ctx.skipped)
                for item in ctx.skipped:
                    if item.get("split"):
                        report.counts(name, item["split"])["skipped"] += 1
                entry["skipped"] = len(ctx.skipped)
                meta["sources"][name] = {
                    "root": os.path.realpath(roots[name]),
                    "layout": ctx.layout,
                    "summary": spec.summary,
                    "splits": sorted(s for s, c in entry["splits"].items() if c["videos"]),
                    "ground_truth": dict(sorted(ctx.gt_splits.items())),
                }
            for handle in handles.values():
                handle.flush()
                os.fsync(handle.fileno())
        finally:
            for handle in handles.values():
                handle.close()
        report.seconds = time.perf_counter() - started
        atomic_write_json(tmp / "meta.json", meta)
        atomic_write_json(tmp / "report.json", report.to_json())
        os.unlink(tmp / LOCK_NAME)  # from here until the swap, the live process id marks the folder as in use
        _swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        os.close(lock)
        if pool is not None:
            pool.shutdown()
    return report


def _curate_source(
    ctx: LoadContext,
    bundles: Iterable[VideoBundle],
    validator: Validator,
    handles: dict,
    rel: _RelPaths,
    report: CurationReport,
    seen_videos: set[str],
    seed: int,
) -> None:
    for bundle in bundles:
        video = bundle.video
        split = video.split
        if video.video_id in seen_videos:
            ctx.skip(
                ItemError(bundle.provenance.expressions, f"video {video.video_id} appears twice"),
                split=split,
                item=video.video_id,
            )
            continue
        if not validator.video_ok(bundle):
            continue
        objects = validator.objects(bundle)
        expressions = validator.expressions(bundle, {o.object_id for o in objects})
        kept, seen = [], {}
        for exp in expressions:
            key = dedup_key(exp)
            if key in seen:
                removed = split in TRAIN_SPLITS
                report.duplicates.append(
                    {
                        "source": ctx.source,
                        "split": split,
                        "item": exp.expression_id,
                        "duplicate_of": seen[key],
                        "removed": removed,
                    }
                )
                report.counts(ctx.source, split)["duplicates_removed" if removed else "duplicates_kept"] += 1
                if removed:
                    continue
            else:
                seen[key] = exp.expression_id
            kept.append(exp)
        seen_videos.add(video.video_id)
        counts = report.counts(ctx.source, split)
        for key, value in bundle.counts.items():
            counts[key] = counts.get(key, 0) + value
        # vars() rather than to_json(): dataclasses.asdict deep-copies every mask dict, the costliest part of writing.
        _dump(handles["videos.jsonl"], {**vars(video), "frame_paths": [rel(p) for p in video.frame_paths]})
        counts["videos"] += 1
        counts["frames"] += video.num_frames
        for obj in objects:
            _dump(handles["objects.jsonl"], vars(obj))
            counts["objects"] += 1
            counts["masks"] += sum(m is not None for m in obj.masks)
            counts["boxes"] += sum(b is not None for b in obj.boxes)
        for exp in kept:
            _dump(handles["expressions.jsonl"], vars(exp))
            counts["expressions"] += 1
            qa = make_qa(exp, seed)
            if qa is not None:
                _dump(handles["qa.jsonl"], vars(qa))
                counts["qa"] += 1
    report.sources[ctx.source]["boxes_clipped"] = validator.boxes_clipped


LOCK_NAME = ".curate.lock"


def _hold_lock(folder: Path) -> int:
    """An exclusive lock on ``folder/.curate.lock``, held (by the open descriptor) for as long as this run lives:
    the kernel drops it when the process dies, however it dies."""
    fd = os.open(folder / LOCK_NAME, os.O_CREAT | os.O_RDWR, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def _in_use(folder: Path, pid: int) -> bool:
    """Whether a temporary folder belongs to a live run: its lock is held, or (no lock file: the moment before the
    swap, or an ``.old`` folder) the process that named it is alive. When in doubt, in use."""
    lock = folder / LOCK_NAME
    if lock.is_file():
        try:
            fd = os.open(lock, os.O_RDWR)
        except OSError:
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        finally:
            os.close(fd)
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def remove_stale_temporaries(out: Path) -> list[Path]:
    """Remove what killed runs left beside ``out``: only folders named as this module names its temporaries
    (``.<out>.tmp-<pid>``, ``.<out>.old-<pid>``), real folders (not links), and not those of a live run."""
    pattern = re.compile(re.escape(f".{out.name}.") + r"(?:tmp|old)-(\d+)")
    removed = []
    with os.scandir(out.parent) as entries:
        candidates = [e for e in entries if pattern.fullmatch(e.name) and e.is_dir(follow_symlinks=False)]
    for entry in sorted(candidates, key=lambda e: e.name):
        pid = int(pattern.fullmatch(entry.name).group(1))
        if pid == os.getpid() or _in_use(Path(entry.path), pid):
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        removed.append(Path(entry.path))
    return removed


def _swap_into_place(tmp: Path, out: Path) -> None:
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        if old.exists():
            shutil.rmtree(old)
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# -- SPARROW-Mini ------------------------------------------------------------------------------------------------


def _manifest_sources(root: Path) -> dict[str, Path]:
    """NAME -> sub-folder from a generated root's ``manifest.json`` (flat, or under a ``sources`` key)."""
    import sparrow.data.sources as registry

    path = root / "manifest.json"
    manifest = read_json(path)
    table = manifest.get("sources", manifest) if isinstance(manifest, dict) else None
    if not isinstance(table, dict):
        raise DataError(f"{path}: expected a mapping of source NAME -> sub-folder")
    found = {}
    for name, sub in table.items():
        if name not in registry.REGISTRY:
            continue
        if isinstance(sub, dict):
            sub = sub.get("path") or sub.get("root") or sub.get("dir")
        if not isinstance(sub, str):
            raise DataError(f"{path}: source {name} has no sub-folder")
        found[name] = root / sub
    if not found:
        raise DataError(f"{path}: lists none of the sources {', '.join(registry.REGISTRY)}")
    return found


def ensure_curated(profile: str, seed: int) -> Path:
    """The curated SPARROW-Mini of ``profile``/``seed``, generating and curating it when absent or stale."""
    from sparrow.data.synthetic import ensure_generated
    from sparrow.paths import curated_dir
    from sparrow.profiles import check_profile

    check_profile(profile)
    root = Path(ensure_generated(profile, seed))
    fingerprint = hashlib.sha256((root / "manifest.json").read_bytes()).hexdigest()
    out = curated_dir(profile, seed)
    sources = _manifest_sources(root)
    if _is_curated(out) and (out / "report.json").is_file():
        try:
            meta = read_json(out / "meta.json")
        except DataError:
            meta = {}
        if (
            meta.get("manifest_sha256") == fingerprint
            and meta.get("format_version") == FORMAT_VERSION
            and meta.get("seed") == seed
            and sorted(meta.get("sources", {})) == sorted(sources)
        ):
            return out
    curate(
        sources,
        out,
        seed=seed,
        extra_meta={"profile": profile, "manifest_sha256": fingerprint, "generated_root": os.path.realpath(root)},
    )
    return out


def ensure_curated_release(
    sources: dict[str, str | Path],
    out: str | Path,
    *,
    seed: int = 0,
    skip_bad: bool = False,
    splits: list[str] | None = None,
) -> Path:
    """Curate real releases (NAME -> root) into ``out`` once; later calls with the same roots, seed, splits and
    ``skip_bad`` reuse the finished folder (a paper-size curation decodes every frame of every video).

    Releases do not change once unpacked, so the roots (resolved) identify the input; delete ``out`` to redo it.
    """
    if not sources:
        raise ValueError(
            "ensure_curated_release needs at least one source (NAME -> release root); names: " + ", ".join(SOURCE_NAMES)
        )
    roots = {name: os.path.realpath(root) for name, root in sorted(sources.items())}
    wanted = _parse_splits(splits)
    out = Path(out)
    key = {"release_roots": roots, "skip_bad": bool(skip_bad)}
    if _is_curated(out) and (out / "report.json").is_file():
        try:
            meta = read_json(out / "meta.json")
        except DataError:
            meta = {}
        if (
            meta.get("format_version") == FORMAT_VERSION
            and meta.get("seed") == seed
            and meta.get("splits") == (list(wanted) if wanted else None)
            and all(meta.get(k) == v for k, v in key.items())
        ):
            return out
    curate(
        {name: Path(root) for name, root in roots.items()},
        out,
        splits=splits,
        skip_bad=skip_bad,
        seed=seed,
        extra_meta=key,
    )
    return out


# -- command line ------------------------------------------------------------------------------------------------


def _source_arg(text: str) -> tuple[str, Path]:
    name, sep, root = text.partition("=")
    if not sep or not name or not root:
        raise argparse.ArgumentTypeError(f"expected NAME=ROOT, got {text!r}")
    return name.strip(), Path(root)


def build_parser() -> argparse.ArgumentParser:
    import sparrow.data.sources as registry

    parser = argparse.ArgumentParser(
        prog="sparrow curate",
        description="Harmonise referential video sources into one curated dataset.",
        epilog="sources: " + ", ".join(registry.REGISTRY),
    )
    parser.add_argument(
        "--source",
        action="append",
        type=_source_arg,
        required=True,
        metavar="NAME=ROOT",
        help="a source and its release root (repeatable)",
    )
    parser.add_argument("--out", required=True, help="the curated dataset folder to (re)write")
    parser.add_argument("--splits", nargs="+", default=None, choices=SPLITS, help="keep only these splits")
    parser.add_argument("--skip-bad", action="store_true", help="skip malformed items and list them in report.json")
    parser.add_argument("--seed", type=int, default=0, help="seed of the Q&A template choice")
    parser.add_argument("--fps", type=float, default=None, help="frames per second kept when extracting mp4 sources")
    return parser


def main_curate(argv: list[str] | None = None) -> int:
    """``sparrow curate --source NAME=ROOT [...] --out DIR [--splits ...] [--skip-bad]``."""
    args = build_parser().parse_args(argv)
    sources: dict[str, Path] = {}
    for name, root in args.source:
        if name in sources:
            print(f"sparrow curate: error: source {name} given twice", file=sys.stderr)
            return 2
        sources[name] = root
    try:
        report = curate(
            sources,
            Path(args.out),
            args.splits,
            args.skip_bad,
            seed=args.seed,
            extraction=FrameExtraction(fps=args.fps),
        )
    except (DataError, ValueError) as exc:
        print(f"sparrow curate: error: {exc}", file=sys.stderr)
        return 1
    print(report.summary())
    print(
        f"curated dataset written to {report.out} in {report.seconds:.1f} s "
        f"({len(report.skipped)} items skipped, {len(report.duplicates)} duplicates; see report.json)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main_curate())
