"""The offline TSF pass: detector -> tracker -> target crops -> encoder -> TSF K-means, per (video, expression).

:func:`run_tsf` walks one split of a curated dataset, video by video (frames are read once per video; expressions
that share a keyframe box share one track), stores each expression's result in the content-addressed cache
(:mod:`sparrow.tsf.cache`) and writes a merged index and report. A run that is killed resumes where it stopped
with identical output, because finished entries are found by key and unfinished ones never became visible. Under
``torchrun``/``accelerate launch`` each rank takes every world-th video and rank 0 merges (:mod:`sparrow.tsf.sharding`).
:func:`ensure_tsf` is the cached entry point by profile, seed, split and source (what notebooks 02 and 04 call, and
``sparrow tsf`` on the command line);
:class:`sparrow.tsf.runs.TSFRun` reads a finished run back (per-frame boxes for ``SparrowModel.predict``).

Fallbacks (each counted in the report and tagged on the entry, never an exception):

- ``no_detection``: no box above ``box_threshold`` on the keyframe -> no track; every crop is the whole frame
  (the released rule for a frame without a box).
- ``no_target``: ground-truth box source or mask variant, but no referent is visible in the clip -> whole frames.
- ``lost_track``: the tracker lost the target on some sampled frames -> those crops reuse the previous sampled
  frame's box (the whole frame before the first), the released rule of docs/design.md §4.2 step 5.
- ``short_video``: fewer than K frames -> fewer than K crops, all kept (K-means returns every vector when n <= K).

The clip is the expression's ``frame_span`` when it has one (the sentence only holds there), else the video.
Only the expression kinds in ``TSFConfig.expression_kinds`` are processed (GCG captions name several objects and
are not detector queries); the others are counted as ``skipped_kind``.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from sparrow.data.curate import ensure_curated
from sparrow.data.curated import CuratedDataset, records_fingerprint
from sparrow.paths import cache_dir
from sparrow.profiles import check_profile, get_profile
from sparrow.storage import DataError, atomic_write_json, digest_json, iter_jsonl, sha256_file, write_jsonl
from sparrow.tsf.cache import CorruptEntry, TSFEntry, TSFStore, entry_key, video_fingerprint
from sparrow.tsf.crops import (
    TSF_FRAMES,
    TSF_MASK_FRAMES,
    ground_truth_mask_crops,
    sample_frame_indices,
    tracked_box_crops,
)
from sparrow.tsf.detection import (
    QUERY_KINDS,
    DetectorConfig,
    GroundingDetector,
    choose_keyframe,
    ensure_detector,
    torch_threads,
    weights_fingerprint,
)
from sparrow.tsf.encoder import CropEncoder, PatchMeanEncoder, check_encoder_output, encoder_fingerprint
from sparrow.tsf.kmeans import Selection, tsf_kmeans
from sparrow.tsf.runs import TSFRun
from sparrow.tsf.sharding import Shard, barrier, gather, init_shard
from sparrow.tsf.tracking import Track, Tracker, TrackerConfig, build_tracker, resolve_boxes_txt

TIMING_STAGES = ("load", "detect", "track", "crop", "encode", "kmeans", "cache")
FALLBACKS = ("no_detection", "no_target", "lost_track", "short_video")


@dataclass(frozen=True)
class TSFConfig:
    """Everything that decides a TSF result (all of it enters the cache key, except ``device``).

    ``crop_variant``: ``tracked`` (the paper pipeline) or ``gt_mask`` (the released training-time crops).
    ``num_frames`` crops per expression (the encoder's 16 frames), ``num_mask_frames`` the aligned mask frames of
    the ``gt_mask`` variant (8 in released training), ``crop_size`` the encoder's input side (336 for CLIP-336),
    ``k``/``kmeans_iters``/``select`` TSF K-means (4 / 8 / medoid as released).
    """

    profile: str = "mini"
    crop_variant: Literal["tracked", "gt_mask"] = "tracked"
    num_frames: int = TSF_FRAMES
    num_mask_frames: int = TSF_MASK_FRAMES
    crop_size: int = 336
    k: int = 4
    kmeans_iters: int = 8
    select: Selection = "medoid"
    store_crop_features: bool = True
    expression_kinds: tuple[str, ...] = QUERY_KINDS
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    device: str | None = None
    # Intra-op threads while the pass runs (None: torch's default). The tiny models gain nothing from threads
    # and lose up to 25x when other processes share the cores; more cores are used through sharding instead.
    threads: int | None = 1

    def __post_init__(self) -> None:
        check_profile(self.profile)
        if self.crop_variant not in ("tracked", "gt_mask"):
            raise ValueError(f"crop_variant must be 'tracked' or 'gt_mask', got {self.crop_variant!r}")
        if self.k < 1 or self.num_frames < 1 or self.crop_size < 1:
            raise ValueError("k, num_frames and crop_size must be positive")

    @classmethod
    def for_profile(cls, profile: str, **overrides) -> TSFConfig:
        section = get_profile(profile).tsf
        settings = dict(
            profile=profile,
            crop_size=section.crop_size,
            store_crop_features=section.store_crop_features,
            threads=section.threads,
            detector=DetectorConfig.for_profile(profile),
            tracker=TrackerConfig.for_profile(profile),
        )
        return cls(**{**settings, **overrides})

    def key_dict(self) -> dict[str, Any]:
        """The settings that change results, with file paths replaced by what they hold."""
        data = asdict(self)
        data.pop("device")
        data.pop("threads")
        data.pop("profile")
        data["detector"].pop("batch_size")
        data["detector"].pop("checkpoint_dir")
        tracker = data["tracker"]
        tracker.pop("boxes_txt")
        checkpoint = tracker.pop("sam2_checkpoint")
        tracker["sam2_weights"] = sha256_file(checkpoint) if checkpoint else None
        if self.crop_variant == "gt_mask":
            data.pop("detector")
            data.pop("tracker")
        elif self.tracker.kind != "sam2":
            for name in [n for n in tracker if n.startswith("sam2")]:
                tracker.pop(name)
        return data


@dataclass
class TSFReport:
    """What a TSF pass did: counts (fallbacks included), seconds per stage, the merged index."""

    split: str
    run_key: str
    counts: dict[str, int]
    timings: dict[str, float]
    wall_s: float
    world: int
    rows: list[dict[str, Any]]
    index_path: Path | None = None
    source: str | None = None
    store_root: Path | None = None

    def to_json(self) -> dict[str, Any]:
        store = None
        if self.store_root is not None:
            # relative to the run folder, so that the artifact root can move (sparrow.tsf.runs.TSFRun reads it)
            base = self.index_path.parent if self.index_path is not None else Path.cwd()
            store = os.path.relpath(Path(self.store_root).resolve(), base.resolve())
        return {
            "split": self.split,
            "source": self.source,
            "run_key": self.run_key,
            "counts": self.counts,
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
            "wall_s": round(self.wall_s, 4),
            "world": self.world,
            "index": str(self.index_path) if self.index_path else None,
            "store": store,
        }

    def entries(self, store: TSFStore | None = None) -> list[TSFEntry]:
        store = store or TSFStore()
        return [store.get(row["key"]) for row in self.rows]


class _Timer:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    def __call__(self, stage: str):
        timer = self

        class _Span:
            def __enter__(self):
                self.start = time.perf_counter()

            def __exit__(self, *exc):
                timer.seconds[stage] += time.perf_counter() - self.start

        return _Span()


def _clip(expression, num_video_frames: int) -> tuple[int, int]:
    if expression.frame_span:
        start, end = expression.frame_span
        start, end = max(0, int(start)), min(num_video_frames, int(end))
        if end > start:
            return start, end
    return 0, num_video_frames


def _box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


class TSFRunner:
    """Computes TSF entries for the expressions of one video (the unit of work of a shard)."""

    def __init__(
        self,
        dataset,
        config: TSFConfig,
        encoder: CropEncoder,
        detector: GroundingDetector | None,
        tracker: Tracker | None,
        store: TSFStore,
        timer: _Timer,
    ):
        self.dataset, self.config, self.encoder = dataset, config, encoder
        self.detector, self.tracker, self.store, self.timer = detector, tracker, store, timer
        self.config_key = config.key_dict()
        self.components = run_components(config, encoder, detector.fingerprint if detector is not None else None)

    def keys(self, video_id: str, expressions: Sequence) -> list[str]:
        video_hash = video_fingerprint(self.dataset, video_id)
        objects = self.dataset.objects(video_id)
        components = dict(self.components)
        if self.config.crop_variant == "tracked" and self.config.tracker.kind == "external":
            path = resolve_boxes_txt(self.config.tracker.boxes_txt, video_id.split("/", 1)[-1])
            components["tracker_file"] = sha256_file(path) if path.is_file() else None
        return [
            entry_key(
                video_hash,
                e.to_json(),
                [objects[o].to_json() for o in e.object_ids if o in objects],
                self.config_key,
                components,
            )
            for e in expressions
        ]

    def compute_video(
        self,
        video_id: str,
        expressions: Sequence,
        keys: Sequence[str],
        on_entry: Callable[[TSFEntry, str], None] | None = None,
    ) -> list[tuple[TSFEntry, str]]:
        """Entries for ``expressions`` of one video, from the cache where valid, computed otherwise.

        Returns (entry, status) with status ``hit``, ``computed`` or ``recomputed`` (a corrupt entry replaced).
        """
        results: list[tuple[TSFEntry, str] | None] = [None] * len(expressions)
        todo = []
        for i, key in enumerate(keys):
            with self.timer("cache"):
                try:
                    entry = self.store.get(key)
                    status = "computed"
                except CorruptEntry:
                    entry, status = None, "recomputed"
            if entry is not None:
                results[i] = (entry, "hit")
            else:
                todo.append((i, status))
        if todo:
            video = self.dataset.video(video_id)
            with self.timer("load"):
                frames = self.dataset.load_frames(video_id)
                paths = [str(self.dataset.frame_path(video, t)) for t in range(video.num_frames)]
            tracks: dict[tuple, Track] = {}
            keyframes = self._keyframes(video_id, frames, [expressions[i] for i, _ in todo])
            for (i, status), keyframe in zip(todo, keyframes):
                entry = self._compute(video_id, frames, paths, expressions[i], keys[i], keyframe, tracks)
                with self.timer("cache"):
                    self.store.put(entry)
                results[i] = (entry, status)
                if on_entry is not None:
                    on_entry(entry, status)
        return results  # type: ignore[return-value]

    # -- stages ------------------------------------------------------------------------------------------------------
    def _keyframes(self, video_id: str, frames: np.ndarray, expressions: Sequence) -> list[dict[str, Any]]:
        """Keyframe, box, score and source per expression (detector batched over a video's expressions)."""
        cfg = self.config
        out: list[dict[str, Any]] = [{} for _ in expressions]
        if cfg.crop_variant == "gt_mask":
            return [{"source": "gt_mask"} for _ in expressions]
        objects = self.dataset.objects(video_id)
        if cfg.detector.box_source == "ground_truth":
            for j, e in enumerate(expressions):
                start, end = _clip(e, frames.shape[0])
                out[j] = {"source": "ground_truth"}
                for t in range(start, end):
                    hit = next((o for o in e.object_ids if o in objects and objects[o].boxes[t] is not None), None)
                    if hit is not None:
                        out[j] = {
                            "source": "ground_truth",
                            "frame": t - start,
                            "box": tuple(objects[hit].boxes[t]),
                            "score": 1.0,
                            "object": hit,
                        }
                        break
            return out
        with self.timer("detect"):
            if cfg.detector.keyframe == "first":
                images = [frames[_clip(e, frames.shape[0])[0]] for e in expressions]
                found = self.detector.detect(
                    images,
                    [e.text for e in expressions],
                    text_threshold=cfg.detector.text_threshold,
                    batch_size=cfg.detector.batch_size,
                )
                picks = [(0, f) for f in found]
            else:
                picks = []
                for e in expressions:
                    start, end = _clip(e, frames.shape[0])
                    picks.append(choose_keyframe(self.detector, frames[start:end], e.text, cfg.detector))
        for j, (e, (frame, detections)) in enumerate(zip(expressions, picks)):
            best = detections.best
            start = _clip(e, frames.shape[0])[0]
            if best is None or best[1] <= cfg.detector.box_threshold:
                out[j] = {"source": "detector", "frame": frame, "score": None if best is None else best[1], "box": None}
                continue
            box, score = best
            out[j] = {
                "source": "detector",
                "frame": frame,
                "box": box,
                "score": score,
                "object": self._matching_object(objects, e.object_ids, start + frame, box),
            }
        return out

    @staticmethod
    def _matching_object(objects, object_ids, t: int, box) -> str | None:
        """The referent the detection overlaps most on the keyframe (for evaluation only)."""
        scored = [
            (_box_iou(box, objects[o].boxes[t]), o)
            for o in object_ids
            if o in objects and objects[o].boxes[t] is not None
        ]
        scored = [s for s in scored if s[0] > 0]
        return max(scored)[1] if scored else None

    def _compute(
        self,
        video_id: str,
        frames: np.ndarray,
        paths: list[str],
        expression,
        key: str,
        keyframe: dict[str, Any],
        tracks: dict[tuple, Track],
    ) -> TSFEntry:
        cfg = self.config
        start, end = _clip(expression, frames.shape[0])
        clip = frames[start:end]
        total = clip.shape[0]
        fallbacks: list[str] = []
        lost_crop_frames = 0
        track_boxes = np.full((total, 4), np.nan, dtype=np.float32)
        objects = self.dataset.objects(video_id)
        target = keyframe.get("object")
        if cfg.crop_variant == "gt_mask":
            referents = [objects[o] for o in expression.object_ids if o in objects]
            masks = [self.dataset.object_masks(video_id, o.object_id)[start:end] for o in referents]
            if not any(m.any() for m in masks):
                fallbacks.append("no_target")
            with self.timer("crop"):
                crops, indices, used = ground_truth_mask_crops(
                    clip, masks, cfg.crop_size, cfg.num_frames, cfg.num_mask_frames
                )
            height, width = clip.shape[1:3]
            crop_boxes = np.asarray(
                [(b[0] * width, b[1] * height, b[2] * width, b[3] * height) for b in used], dtype=np.float32
            ).reshape(-1, 4)
            target = next((o.object_id for o, m in zip(referents, masks) if m.any()), None)
        else:
            indices = sample_frame_indices(total, cfg.num_frames)
            if keyframe.get("box") is None:
                fallbacks.append("no_detection" if keyframe["source"] == "detector" else "no_target")
                per_frame: list = [None] * total
            else:
                memo = (start, end, keyframe["frame"], tuple(round(v, 2) for v in keyframe["box"]))
                if memo not in tracks:
                    with self.timer("track"):
                        tracks[memo] = self.tracker.track(
                            clip, keyframe["frame"], keyframe["box"], frame_paths=paths[start:end], video_id=video_id
                        )
                per_frame = tracks[memo].boxes
                for t, box in enumerate(per_frame):
                    if box is not None:
                        track_boxes[t] = box
                lost_crop_frames = sum(per_frame[t] is None for t in indices)
                if lost_crop_frames:
                    fallbacks.append("lost_track")
            with self.timer("crop"):
                # from the stored float32 track, so that the model's crops of TSFRun.boxes are these exactly
                crops, indices, boxes = tracked_box_crops(clip, track_boxes, cfg.crop_size, cfg.num_frames)
            crop_boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        if total < cfg.k:
            fallbacks.append("short_video")
        with self.timer("encode"):
            with torch.no_grad():
                features = (
                    check_encoder_output(self.encoder(crops), len(indices)) if len(indices) else torch.zeros(0, 1)
                )
        with self.timer("kmeans"):
            chosen = tsf_kmeans(features, cfg.k, cfg.kmeans_iters, cfg.select)
        return TSFEntry(
            video_id=video_id,
            expression_id=expression.expression_id,
            key=key,
            keyframe=None if keyframe.get("frame") is None else start + int(keyframe["frame"]),
            key_box=None if keyframe.get("box") is None else tuple(float(v) for v in keyframe["box"]),
            key_score=keyframe.get("score"),
            key_source=keyframe["source"],
            target_object=target,
            fallbacks=tuple(f for f in FALLBACKS if f in fallbacks),
            clip_start=start,
            frame_indices=[start + i for i in indices],
            crop_boxes=crop_boxes,
            track_boxes=track_boxes,
            selected=chosen.indices.cpu().numpy(),
            features=chosen.vectors.float().cpu(),
            crop_features=features.float().cpu() if cfg.store_crop_features else None,
            meta={
                "lost_crop_frames": int(lost_crop_frames),
                "clip_frames": int(total),
                "video_frames": int(frames.shape[0]),
                "frame_size": [int(v) for v in frames.shape[1:3]],
            },
        )


def run_components(config: TSFConfig, encoder: CropEncoder, detector_fingerprint: str | None) -> dict[str, Any]:
    """The fingerprints of the learned parts a TSF result depends on (they enter every key)."""
    components: dict[str, Any] = {"encoder": encoder_fingerprint(encoder, config.crop_size)}
    if config.crop_variant == "tracked" and config.detector.box_source == "detector":
        components["detector"] = detector_fingerprint
    return components


def _run_key(
    dataset, split: str, source: str | None, config: TSFConfig, components: dict, limit_videos: int | None
) -> str:
    payload = {
        "data": records_fingerprint(dataset.root),
        "split": split,
        "source": source,
        "config": config.key_dict(),
        "components": components,
        "limit_videos": limit_videos,
    }
    return digest_json(payload, 16)


def default_run_dir(split: str, source: str | None, run_key: str) -> Path:
    """``cache_dir("tsf")/runs/<split>[-<source>]-<run key>``: where a run's index and report go by default."""
    name = split.replace("/", "_") + (f"-{source}" if source else "")
    return cache_dir("tsf") / "runs" / f"{name}-{run_key}"


def run_tsf(
    curated_root: str | os.PathLike,
    split: str,
    config: TSFConfig,
    encoder: CropEncoder,
    *,
    source: str | None = None,
    detector: GroundingDetector | None = None,
    tracker: Tracker | None = None,
    store: TSFStore | None = None,
    out_dir: str | os.PathLike | None = None,
    limit_videos: int | None = None,
    on_entry: Callable[[TSFEntry, str], None] | None = None,
) -> TSFReport:
    """Compute (or load from the cache) the TSF of every expression of ``split``; see the module docstring.

    ``source`` keeps one source's videos (e.g. ``"ref-davis17"``; None: every source with that split).
    ``detector``/``tracker`` default to the ones ``config`` names (the detector from
    ``config.detector.checkpoint_dir``). ``out_dir`` receives ``index.jsonl`` (one summary row per expression,
    sorted) and ``report.json``; default :func:`default_run_dir`. ``on_entry`` is called after each entry is
    stored (progress, tests). ``report.json`` times what this call computed: a run that finds everything in the
    cache times only the look-ups.
    """
    with torch_threads(config.threads):
        return _run_tsf(
            curated_root, split, config, encoder, source, detector, tracker, store, out_dir, limit_videos, on_entry
        )


def _run_tsf(
    curated_root, split, config, encoder, source, detector, tracker, store, out_dir, limit_videos, on_entry
) -> TSFReport:
    started = time.perf_counter()
    shard: Shard = init_shard()
    dataset = CuratedDataset(curated_root)
    device = config.device or shard.device
    encoder_size = getattr(encoder, "crop_size", None)
    if encoder_size is not None and int(encoder_size) != config.crop_size:
        raise ValueError(
            f"the crop encoder expects {encoder_size}-px crops but TSFConfig.crop_size is {config.crop_size}"
        )
    needs_detector = config.crop_variant == "tracked" and config.detector.box_source == "detector"
    if needs_detector and detector is None:
        if not config.detector.checkpoint_dir:
            raise ValueError(
                "TSFConfig.detector.checkpoint_dir is not set: give a GroundingDINO folder (paper) or "
                "the one sparrow.tsf.detection.ensure_detector trained (smoke/mini)"
            )
        detector = GroundingDetector(config.detector.checkpoint_dir, device=device)
    if config.crop_variant == "tracked" and tracker is None:
        tracker = build_tracker(config.tracker, device=device)
    store = store or TSFStore()
    timer = _Timer()
    runner = TSFRunner(dataset, config, encoder, detector if needs_detector else None, tracker, store, timer)

    by_video: dict[str, list] = defaultdict(list)
    skipped = 0
    if source is not None and source not in dataset.sources():
        raise ValueError(f"{curated_root}: no source {source!r} (the curated set has {', '.join(dataset.sources())})")
    for expression in dataset.iter_expressions(source=source, split=split):
        if expression.kind in config.expression_kinds:
            by_video[expression.video_id].append(expression)
        else:
            skipped += 1
    videos = sorted(by_video)
    if limit_videos is not None:
        videos = videos[:limit_videos]

    counts: dict[str, int] = defaultdict(int)
    rows: list[dict[str, Any]] = []
    for video_id in shard.take(videos):
        expressions = sorted(by_video[video_id], key=lambda e: e.expression_id)
        with timer("cache"):
            keys = runner.keys(video_id, expressions)
        computed_here = False
        for entry, status in runner.compute_video(video_id, expressions, keys, on_entry):
            counts[{"hit": "cache_hits", "computed": "computed", "recomputed": "corrupt_recomputed"}[status]] += 1
            if status != "hit":
                computed_here = True
            if status == "recomputed":
                counts["computed"] += 1
            for name in entry.fallbacks:
                counts[name] += 1
            counts["lost_crop_frames"] += int(entry.meta.get("lost_crop_frames", 0))
            rows.append(entry.summary())
        counts["videos"] += 1
        counts["computed_videos"] += int(computed_here)

    parts = gather({"rows": rows, "counts": dict(counts), "timings": dict(timer.seconds)}, shard)
    merged_counts: dict[str, int] = defaultdict(int)
    merged_timings: dict[str, float] = {stage: 0.0 for stage in TIMING_STAGES}
    merged_rows: list[dict[str, Any]] = []
    for part in parts:
        merged_rows.extend(part["rows"])
        for name, value in part["counts"].items():
            merged_counts[name] += value
        for name, value in part["timings"].items():
            merged_timings[name] += value
    merged_rows.sort(key=lambda r: (r["video_id"], r["expression_id"]))
    merged_counts["expressions"] = len(merged_rows)
    merged_counts["skipped_kind"] = skipped
    for name in ("computed", "computed_videos", "cache_hits", "corrupt_recomputed", "lost_crop_frames", *FALLBACKS):
        merged_counts.setdefault(name, 0)
    run_key = _run_key(dataset, split, source, config, runner.components, limit_videos)
    out = Path(out_dir) if out_dir is not None else default_run_dir(split, source, run_key)
    report = TSFReport(
        split=split,
        run_key=run_key,
        counts=dict(sorted(merged_counts.items())),
        timings=merged_timings,
        wall_s=time.perf_counter() - started,
        world=shard.world,
        rows=merged_rows,
        index_path=out / "index.jsonl",
        source=source,
        store_root=store.root,
    )
    if shard.is_main:
        write_jsonl(out / "index.jsonl", merged_rows)
        atomic_write_json(out / "report.json", report.to_json())
    barrier(shard)
    return report


def profile_config(
    profile: str,
    curated_root: str | os.PathLike,
    box_source: str = "detector",
    detector_dir: str | os.PathLike | None = None,
    sam2_checkpoint: str | os.PathLike | None = None,
    **overrides,
) -> TSFConfig:
    """:meth:`TSFConfig.for_profile` with the detector the profile uses.

    ``detector_dir`` names a GroundingDINO folder (the released checkpoint; required under ``paper`` with the
    detector box source). Without it, ``smoke``/``mini`` use the tiny GroundingDINO trained on the curated set's
    training split (:func:`sparrow.tsf.detection.ensure_detector`, trained on first use and cached).
    ``sam2_checkpoint`` is the SAM2 weights file of the ``sam2`` tracker (the ``paper`` tracker).
    ``box_source="ground_truth"`` starts every track from the referent's ground-truth box instead (the oracle
    keyframe option: no detector is trained or used).
    """
    if box_source not in ("detector", "ground_truth"):
        raise ValueError(f"box_source must be 'detector' or 'ground_truth', got {box_source!r}")
    # A profile without a tiny detector recipe (paper) reads the released GroundingDINO from a local folder.
    if box_source == "detector" and detector_dir is None and get_profile(profile).tsf.detector_training is None:
        raise ValueError(
            f"under {profile!r} give the local GroundingDINO folder (detector_dir; --detector on the "
            "command line) and the SAM2 weights (sam2_checkpoint)"
        )
    if detector_dir is not None and not Path(detector_dir).is_dir():
        raise FileNotFoundError(f"detector folder not found: {detector_dir}")
    if box_source != "detector" or detector_dir is not None:
        overrides["detector"] = replace(
            DetectorConfig.for_profile(profile),
            box_source=box_source,
            checkpoint_dir=None if detector_dir is None else str(detector_dir),
        )
    if sam2_checkpoint is not None:
        overrides["tracker"] = replace(TrackerConfig.for_profile(profile), sam2_checkpoint=str(sam2_checkpoint))
    base = TSFConfig.for_profile(profile, **overrides)
    if base.crop_variant == "tracked" and base.detector.box_source == "detector" and not base.detector.checkpoint_dir:
        base = replace(
            base, detector=replace(base.detector, checkpoint_dir=str(ensure_detector(curated_root, profile)))
        )
    return base


@contextmanager
def main_rank_first(shard: Shard):
    """Rank 0 runs the block first (it may write shared caches: the curated set, the tiny detector); the other
    ranks run it after, and find what rank 0 wrote."""
    if not shard.is_main:
        barrier(shard)
    yield
    if shard.is_main:
        barrier(shard)


def _finished(out: Path, run_key: str) -> bool:
    """A run folder to reuse as is: written for ``run_key``, its index as long as its report says, every entry
    intact. Anything else (a file cut short, another configuration's report) is recomputed, never read."""
    try:
        run = TSFRun(out)
    except (FileNotFoundError, DataError):
        return False
    return run.report.get("run_key") == run_key and run.counts.get("expressions") == len(run) and not run.problems()


def ensure_tsf(
    profile: str,
    seed: int,
    split: str,
    source: str | None = None,
    *,
    config: TSFConfig | None = None,
    encoder: CropEncoder | None = None,
    curated_root: str | os.PathLike | None = None,
    limit_videos: int | None = None,
) -> Path:
    """The folder of a finished TSF run over ``split`` (of one ``source``, or all) of a curated set.

    Default data: the curated SPARROW-Mini of ``profile``/``seed`` (:func:`sparrow.data.curate.ensure_curated`);
    default config: :func:`profile_config`; default encoder: :class:`PatchMeanEncoder` at the config's crop size
    (the crop boxes do not depend on it; TSF vectors for training come from the model's own ``encode_crops``).
    Cached and content-addressed: when the run folder exists, was written for this key, lists every expression its
    report counts and every entry it lists is intact, it is returned as is (its ``report.json`` keeps the timings of the run that computed it); otherwise :func:`run_tsf` computes
    what is missing, resuming a killed run and recomputing damaged entries. Under ``torchrun`` every rank calls it:
    rank 0 prepares the curated set and the detector first, then the ranks split the pass. Read it with
    :class:`sparrow.tsf.runs.TSFRun`.
    """
    check_profile(profile)
    with main_rank_first(init_shard()):
        root = Path(curated_root) if curated_root is not None else ensure_curated(profile, seed)
        config = config or profile_config(profile, root)
    encoder = encoder if encoder is not None else PatchMeanEncoder(config.crop_size)
    needs_detector = config.crop_variant == "tracked" and config.detector.box_source == "detector"
    if needs_detector and not config.detector.checkpoint_dir:
        raise ValueError("TSFConfig.detector.checkpoint_dir is not set (see profile_config)")
    fingerprint = weights_fingerprint(config.detector.checkpoint_dir) if needs_detector else None
    run_key = _run_key(
        CuratedDataset(root), split, source, config, run_components(config, encoder, fingerprint), limit_videos
    )
    out = default_run_dir(split, source, run_key)
    if _finished(out, run_key):
        return out
    run_tsf(root, split, config, encoder, source=source, out_dir=out, limit_videos=limit_videos)
    return out
