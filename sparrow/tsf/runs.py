"""Finished TSF passes on disk, read back: the per-frame tracked boxes of each (video, expression), its entry, and
track files for the explorer.

A run folder (written by :func:`sparrow.tsf.pipeline.run_tsf`, usually found through
:func:`sparrow.tsf.pipeline.ensure_tsf`) holds ``index.jsonl`` (one summary row per expression) and
``report.json`` (counts, per-stage seconds, and where the content-addressed entries live, relative to the run
folder so that the artifact root can move).

Box format of :meth:`TSFRun.boxes`: a float32 array ``(T, 4)`` with one row per frame of the whole video
(``T = video.num_frames``), pixel ``x0, y0, x1, y1`` (exclusive max) in the video's own frame size, the format
``SparrowModel.predict(frames, text, tsf_boxes=...)`` takes (frame ``i`` uses row ``min(i, L - 1)``). Frames
where the tracker lost the target, frames outside the expression's clip, and every frame of a ``no_detection``
entry are NaN with ``fill_lost=False``: the model then fills its sampled frames as the pass did
(:func:`sparrow.tsf.crops.tracked_box_crops`), so it crops what the pass cropped. With ``fill_lost=True`` (the
default, for readers that need a box on every frame) they take the previous frame's box, or the whole frame
before the first box: the released rule for a frame without a box (docs/design.md §4.2 step 5), applied per frame.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sparrow.data.records import submission_names
from sparrow.storage import DataError, atomic_write_json, iter_jsonl, read_json
from sparrow.tsf.cache import CorruptEntry, TSFEntry, TSFStore
from sparrow.tsf.crops import fill_missing_boxes

if TYPE_CHECKING:
    from sparrow.tsf.pipeline import TSFConfig


def tracked_boxes(entry: TSFEntry, fill_lost: bool = True) -> np.ndarray:
    """The entry's per-video-frame boxes ``(T, 4)`` (see the module docstring for the format)."""
    if entry.key_source == "gt_mask":
        raise ValueError(
            f"{entry.expression_id}: a gt_mask TSF entry has no tracked boxes (its crops come from "
            "ground-truth masks); compute a 'tracked' run for tracked boxes"
        )
    total = int(entry.meta.get("video_frames", entry.clip_start + len(entry.track_boxes)))
    out = np.full((total, 4), np.nan, dtype=np.float32)
    clip = np.asarray(entry.track_boxes, dtype=np.float32).reshape(-1, 4)
    out[entry.clip_start : entry.clip_start + len(clip)] = clip[: max(0, total - entry.clip_start)]
    if not fill_lost:
        return out
    height, width = entry.meta.get("frame_size") or (None, None)
    if height is None:
        raise DataError(f"TSF entry {entry.key}: no frame size recorded; recompute it with the current pipeline")
    rows = [None if np.isnan(row[0]) else tuple(float(v) for v in row) for row in out]
    filled, _ = fill_missing_boxes(rows, int(width), int(height))
    return np.asarray(filled, dtype=np.float32).reshape(total, 4)


class TSFRun:
    """One finished TSF pass: its report, its index rows and, through them, its entries."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        report, index = self.path / "report.json", self.path / "index.jsonl"
        if not report.is_file() or not index.is_file():
            raise FileNotFoundError(
                f"{self.path}: not a finished TSF run (report.json or index.jsonl missing); "
                "compute it with sparrow.tsf.pipeline.ensure_tsf"
            )
        self.report: dict[str, Any] = read_json(report)
        self.rows: list[dict[str, Any]] = list(iter_jsonl(index))
        store = self.report.get("store")
        self.store = TSFStore(self.path / store) if store else TSFStore()
        self._rows = {(r["video_id"], r["expression_id"]): r for r in self.rows}

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def counts(self) -> dict[str, int]:
        return dict(self.report.get("counts", {}))

    @property
    def timings(self) -> dict[str, float]:
        return dict(self.report.get("timings", {}))

    def keys(self) -> list[tuple[str, str]]:
        """The (video_id, expression_id) pairs of the run, sorted."""
        return list(self._rows)

    def row(self, video_id: str, expression_id: str) -> dict[str, Any]:
        try:
            return self._rows[(video_id, expression_id)]
        except KeyError:
            raise KeyError(
                f"{self.path}: no TSF for expression {expression_id!r} of video {video_id!r} "
                f"(the run covers split {self.report.get('split')!r}, source "
                f"{self.report.get('source') or 'all'}, query expressions only)"
            ) from None

    def entry(self, video_id: str, expression_id: str) -> TSFEntry:
        """The stored entry; a missing or damaged file raises with its path (re-run ensure_tsf to repair)."""
        key = self.row(video_id, expression_id)["key"]
        entry = self.store.get(key)
        if entry is None:
            raise DataError(f"{self.store.path(key)}: TSF entry of {expression_id!r} missing; re-run ensure_tsf")
        return entry

    def entries(self) -> Iterator[TSFEntry]:
        for video_id, expression_id in self._rows:
            yield self.entry(video_id, expression_id)

    def boxes(self, video_id: str, expression_id: str, fill_lost: bool = True) -> np.ndarray:
        """Per-frame tracked boxes ``(T, 4)`` of one expression (module docstring)."""
        return tracked_boxes(self.entry(video_id, expression_id), fill_lost)

    def all_boxes(self, fill_lost: bool = True) -> dict[tuple[str, str], np.ndarray]:
        """``{(video_id, expression_id): boxes}`` for every expression of the run."""
        return {(e.video_id, e.expression_id): tracked_boxes(e, fill_lost) for e in self.entries()}

    def problems(self) -> list[str]:
        """Index rows whose entry is missing or fails its checksum (empty for a healthy run)."""
        found = []
        for row in self.rows:
            try:
                entry = self.store.get(row["key"])
            except CorruptEntry as exc:
                found.append(str(exc))
                continue
            if entry is None:
                found.append(f"{self.store.path(row['key'])}: missing")
        return found

    def export_tracks(self, folder: str | os.PathLike) -> int:
        """Write ``<folder>/<video>/<expression>.json`` per expression (the server layout's names), the track
        files notebook 05's explorer reads (:mod:`sparrow.viz.tracks`): per-frame boxes (null where lost) and the
        frames K-means picked."""
        folder = Path(folder)
        count = 0
        for entry in self.entries():
            if entry.key_source == "gt_mask":
                continue
            boxes = [
                None if np.isnan(b[0]) else [round(float(v), 2) for v in b]
                for b in tracked_boxes(entry, fill_lost=False)
            ]
            crop_frames = sorted({entry.frame_indices[i] for i in entry.selected.tolist() if i >= 0})
            video, expression = submission_names(entry.video_id, entry.expression_id)
            path = folder / video / f"{expression}.json"
            atomic_write_json(path, {"boxes": boxes, "format": "xyxy", "crop_frames": crop_frames}, indent=None)
            count += 1
        return count


#: Where a pass takes its keyframe box from: the trained detector (the paper's pipeline) or the referent's
#: ground-truth box (the oracle option, no detector involved).
KEYFRAME_BOXES = ("detector", "ground_truth")


@dataclass(frozen=True)
class TSFPass:
    """One TSF pass: a split, of one ``source`` (None: every source), with keyframe boxes from ``box``."""

    split: str
    source: str | None = None
    box: str = "detector"

    def __post_init__(self) -> None:
        if self.box not in KEYFRAME_BOXES:
            raise ValueError(f"keyframe box must be one of {KEYFRAME_BOXES}, got {self.box!r}")

    @property
    def name(self) -> str:
        """``<split>/<source or 'all'>/<box>``, the pass's part of the recorded keys (``tsf/<name>/...``)."""
        return f"{self.split}/{self.source or 'all'}/{self.box}"

    def __str__(self) -> str:
        return self.name


def ensure_runs(
    profile: str,
    seed: int,
    passes: Iterable[TSFPass | Sequence[str | None]],
    config: TSFConfig | None = None,
    curated_root: str | os.PathLike | None = None,
) -> dict[TSFPass, TSFRun]:
    """Every pass of ``passes`` (``TSFPass`` or ``[split, source, box]``) computed or found in the cache, in order.

    ``config`` is the detector-box configuration (default: :func:`sparrow.tsf.pipeline.profile_config`); the
    ground-truth passes use the profile's configuration with ``box_source="ground_truth"``.
    """
    from sparrow.data.curate import ensure_curated
    from sparrow.tsf.pipeline import ensure_tsf, profile_config

    root = Path(curated_root) if curated_root is not None else ensure_curated(profile, seed)
    configs: dict[str, TSFConfig] = {} if config is None else {"detector": config}
    runs: dict[TSFPass, TSFRun] = {}
    for wanted in passes:
        key = wanted if isinstance(wanted, TSFPass) else TSFPass(*wanted)
        if key.box not in configs:
            configs[key.box] = profile_config(profile, root, box_source=key.box)
        runs[key] = TSFRun(ensure_tsf(profile, seed, key.split, key.source, config=configs[key.box], curated_root=root))
    return runs


def run_counts(runs: Mapping[TSFPass, TSFRun], counts: Sequence[str] | None = None) -> dict[str, dict[str, int]]:
    """``{pass name: {count: value}}``: every count of each run's report, or only ``counts``."""
    return {str(key): run.counts if counts is None else {c: run.counts[c] for c in counts} for key, run in runs.items()}


@dataclass
class Throughput:
    """Seconds per stage over the runs' computed work, and what they amount to per video and per expression.

    Only runs that computed something count (a run served from the cache times look-ups, not the pipeline);
    when none did, the per-item figures are None. Seconds are summed over ranks for a sharded run.
    """

    seconds: dict[str, float]
    computed_expressions: int
    computed_videos: int
    runs: int

    @property
    def total_s(self) -> float:
        return float(sum(self.seconds.values()))

    @property
    def per_video_s(self) -> float | None:
        return self.total_s / self.computed_videos if self.computed_videos else None

    def per_expression_ms(self) -> dict[str, float | None]:
        n = self.computed_expressions
        return {stage: (1000.0 * s / n if n else None) for stage, s in self.seconds.items()}

    def summary(self) -> str:
        """One line: what the runs computed and how long its stages took."""
        per_video = f", {self.per_video_s:.3f} s per video" if self.per_video_s is not None else " (all from the cache)"
        return (
            f"{self.computed_expressions} expressions in {self.computed_videos} videos, "
            f"{self.total_s:.1f} s of stages{per_video}"
        )


def throughput(runs: Sequence[TSFRun]) -> Throughput:
    """Per-stage seconds of the ``runs`` that computed entries (see :class:`Throughput`)."""
    from sparrow.tsf.pipeline import TIMING_STAGES

    seconds = {stage: 0.0 for stage in TIMING_STAGES}
    expressions = videos = counted = 0
    for run in runs:
        counts = run.counts
        if not counts.get("computed"):
            continue
        counted += 1
        expressions += int(counts["computed"])
        videos += int(counts.get("computed_videos", 0))
        for stage, value in run.timings.items():
            seconds[stage] = seconds.get(stage, 0.0) + float(value)
    return Throughput(seconds, expressions, videos, counted)


#: the paper's offline TSF cost, for context: 2.16 GPU-days over about 30k training videos
PAPER_SECONDS_PER_VIDEO = 2.16 * 86400 / 30_000
