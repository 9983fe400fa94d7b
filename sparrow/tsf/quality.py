"""How good the detector and tracker boxes are, measured against SPARROW-Mini's ground truth.

- Detection (per held-out expression, on the pipeline's keyframe): mean IoU of the top box with the best
  matching referent box (over expressions whose referent is visible on the keyframe), accuracy at IoU 0.5 of that
  top box, and AP50: COCO-style 101-point average precision at IoU 0.5 of every detection above a floor score,
  ranked across expressions, against all referent boxes on the keyframes (each GT box matched at most once).
- Tracking (per track): initialised from the ground-truth box on the target's first visible frame, scored on the
  other frames: mean IoU over frames where the target is visible (a lost frame scores 0), success rate = the
  fraction of those frames with IoU >= 0.5, both averaged over tracks; plus how often the tracker reports "lost"
  on frames where the target is really absent. Reported for all tracks and per hard case of the video
  (crossings, occlusions, re-entries, identical distractors), as tagged by the SPARROW-Mini generator.

:func:`evaluate_trackers` runs the trackers notebook 02 compares, :func:`recorded_numbers` lists every number the
notebook records.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from sparrow.tsf.detection import QUERY_KINDS, DetectorConfig, GroundingDetector, choose_keyframe
from sparrow.tsf.runs import PAPER_SECONDS_PER_VIDEO, Throughput, TSFPass, TSFRun
from sparrow.tsf.tracking import TrackerConfig, build_tracker

#: The generator's scene tags for the hard cases TSF tracking must survive, in report order.
HARD_CASES: dict[str, str] = {
    "crossing": "crossings",
    "occlusion": "occlusions",
    "exit_reenter": "re-entries",
    "motion_distractor": "identical distractors",
}


def box_iou(a: Sequence[float] | None, b: Sequence[float] | None) -> float:
    """IoU of two xyxy boxes (exclusive max); 0 when either is missing or degenerate."""
    if a is None or b is None:
        return 0.0
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = max(0.0, a[2] - a[0]) * max(0.0, a[3] - a[1]) + max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def average_precision(
    predictions: Iterable[tuple[Any, float, Sequence[float]]],
    ground_truth: Mapping[Any, Sequence[Sequence[float]]],
    threshold: float = 0.5,
) -> float:
    """COCO-style 101-point interpolated AP of scored boxes ``(image, score, box)`` against ``ground_truth``.

    Predictions are taken best first (ties in input order); each is a true positive if it overlaps an unmatched
    ground-truth box of its image at IoU >= ``threshold`` (the best such box is matched).
    """
    total = sum(len(v) for v in ground_truth.values())
    if total == 0:
        return 0.0
    ranked = sorted(enumerate(predictions), key=lambda p: (-p[1][1], p[0]))
    matched: dict[Any, set[int]] = defaultdict(set)
    hits = []
    for _, (image, _score, box) in ranked:
        candidates = [
            (box_iou(box, gt), j) for j, gt in enumerate(ground_truth.get(image, ())) if j not in matched[image]
        ]
        best = max(candidates, default=(0.0, -1))
        if best[0] >= threshold:
            matched[image].add(best[1])
            hits.append(1)
        else:
            hits.append(0)
    if not hits:
        return 0.0
    tp = np.cumsum(hits)
    precision = tp / np.arange(1, len(hits) + 1)
    recall = tp / total
    # precision envelope, then sampled at 101 recall points
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    points = np.linspace(0, 1, 101)
    idx = np.searchsorted(recall, points, side="left")
    return float(np.mean([envelope[i] if i < len(envelope) else 0.0 for i in idx]))


@dataclass(frozen=True)
class QualityConfig:
    """What notebook 02 measures quality on.

    ``split``: the held-out split (every source that has it) for detection and tracking quality;
    ``sam2_per_case``: referents per hard case (and from plain videos) tracked by SAM2, which costs about 0.2 s a
    frame on CPU (None: every referent, as the appearance tracker is); ``examples_per_case`` entries pictured per
    hard case, ``max_examples`` in all (None: one per hard case and per fallback that occurred).
    """

    split: str = "valid"
    sam2_per_case: int | None = 10
    score_floor: float = 0.05
    examples_per_case: int = 1
    max_examples: int | None = None

    @classmethod
    def for_profile(cls, profile: str) -> QualityConfig:
        from sparrow.profiles import get_profile

        return cls(**get_profile(profile).tsf.quality)


#: Training steps averaged into the detector's final loss (the single-batch loss is noisy).
FINAL_LOSS_WINDOW = 50


def final_loss(losses: Sequence[float], window: int = FINAL_LOSS_WINDOW) -> float | None:
    """Mean of the last ``window`` training losses (all of them when fewer); None without any."""
    tail = list(losses[-window:])
    return sum(tail) / len(tail) if tail else None


@dataclass(frozen=True)
class DetectorTraining:
    """The training log of a tiny GroundingDINO checkpoint (``training.json``, written by
    :func:`sparrow.tsf.detection.train_detector`)."""

    samples: int
    steps: int
    losses: list[float]
    wall_s: float | None = None

    @property
    def final_loss(self) -> float | None:
        return final_loss(self.losses)


def read_detector_training(checkpoint_dir: str | Path) -> DetectorTraining:
    """The training log of the detector in ``checkpoint_dir`` (a released checkpoint has none)."""
    from sparrow.storage import read_json

    path = Path(checkpoint_dir) / "training.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no training log (only detectors trained by the kit have one)")
    log = read_json(path)
    return DetectorTraining(
        samples=int(log["samples"]),
        steps=int(log["config"]["steps"]),
        losses=[float(v) for v in log["losses"]],
        wall_s=log.get("wall_s"),
    )


@dataclass
class DetectionQuality:
    expressions: int
    with_target: int
    mean_iou: float
    acc50: float
    ap50: float
    no_detection: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def evaluate_detection(
    detector: GroundingDetector,
    dataset,
    split: str,
    config: DetectorConfig,
    kinds: Sequence[str] = QUERY_KINDS,
    score_floor: float = 0.05,
    source: str | None = None,
    threads: int | None = 1,
) -> DetectionQuality:
    """Detection quality on the keyframes the pipeline would use for ``split`` (of one ``source``, or all; see the
    module docstring). ``threads``: intra-op threads while it runs (1 suits the tiny detector; None: leave)."""
    from sparrow.tsf.detection import torch_threads

    with torch_threads(threads):
        return _evaluate_detection(detector, dataset, split, config, kinds, score_floor, source)


def _evaluate_detection(detector, dataset, split, config, kinds, score_floor, source) -> DetectionQuality:
    ious, hits = [], []
    predictions: list[tuple[str, float, Sequence[float]]] = []
    truth: dict[str, list] = {}
    total = no_detection = 0
    by_video: dict[str, list] = defaultdict(list)
    for expression in dataset.iter_expressions(source=source, split=split):
        if expression.kind in kinds and expression.text.strip() and expression.object_ids:
            by_video[expression.video_id].append(expression)
    for video_id in sorted(by_video):
        frames = dataset.load_frames(video_id)
        objects = dataset.objects(video_id)
        spans = []
        for expression in by_video[video_id]:
            start, end = expression.frame_span or (0, frames.shape[0])
            start, end = max(0, start), min(frames.shape[0], end)
            spans.append((start, end) if end > start else (0, frames.shape[0]))
        if config.keyframe == "first":
            # one batched call per video, as the pipeline does
            found_all = detector.detect(
                [frames[start] for start, _ in spans],
                [e.text for e in by_video[video_id]],
                text_threshold=config.text_threshold,
                batch_size=config.batch_size,
            )
            picks = [(0, found) for found in found_all]
        else:
            picks = [
                choose_keyframe(detector, frames[start:end], e.text, config)
                for e, (start, end) in zip(by_video[video_id], spans)
            ]
        for expression, (start, _end), (frame, found) in zip(by_video[video_id], spans, picks):
            total += 1
            t = start + frame
            gts = [
                objects[o].boxes[t] for o in expression.object_ids if o in objects and objects[o].boxes[t] is not None
            ]
            truth[expression.expression_id] = gts
            for box, score in zip(found.boxes, found.scores):
                if score >= score_floor:
                    predictions.append((expression.expression_id, float(score), tuple(box)))
            best = found.best
            if best is None or best[1] <= config.box_threshold:
                no_detection += 1
                best_box = None
            else:
                best_box = best[0]
            if gts:
                iou = max(box_iou(best_box, g) for g in gts)
                ious.append(iou)
                hits.append(iou >= 0.5)
    return DetectionQuality(
        expressions=total,
        with_target=len(ious),
        mean_iou=float(np.mean(ious)) if ious else 0.0,
        acc50=float(np.mean(hits)) if hits else 0.0,
        ap50=average_precision(predictions, truth),
        no_detection=no_detection,
    )


@dataclass
class TrackingQuality:
    tracks: int
    mean_iou: float
    success_rate: float
    visible_frames: int
    absent_frames: int
    absent_reported_lost: float | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TrackScore:
    """One track against its ground truth: per-frame IoU on visible frames, lost-flags on absent ones."""

    video_id: str
    object_id: str
    ious: list[float]
    absent_lost: list[bool]

    @property
    def mean_iou(self) -> float:
        return float(np.mean(self.ious)) if self.ious else 0.0

    @property
    def success(self) -> float:
        return float(np.mean([v >= 0.5 for v in self.ious])) if self.ious else 0.0


def score_track(
    video_id: str,
    object_id: str,
    predicted: Sequence[Sequence[float] | None],
    truth: Sequence[Sequence[float] | None],
    skip: Iterable[int] = (),
) -> TrackScore:
    skip = set(skip)
    ious, absent = [], []
    for t, (pred, gt) in enumerate(zip(predicted, truth)):
        if t in skip:
            continue
        if gt is None:
            absent.append(pred is None)
        else:
            ious.append(box_iou(pred, gt))
    return TrackScore(video_id, object_id, ious, absent)


def summarise(scores: Sequence[TrackScore]) -> TrackingQuality:
    absent = [v for s in scores for v in s.absent_lost]
    scored = [s for s in scores if s.ious]
    return TrackingQuality(
        tracks=len(scored),
        mean_iou=float(np.mean([s.mean_iou for s in scored])) if scored else 0.0,
        success_rate=float(np.mean([s.success for s in scored])) if scored else 0.0,
        visible_frames=sum(len(s.ious) for s in scores),
        absent_frames=len(absent),
        absent_reported_lost=float(np.mean(absent)) if absent else None,
    )


def by_hard_case(scores: Sequence[TrackScore], tags: Mapping[str, Sequence[str]] | None) -> dict[str, TrackingQuality]:
    """``all`` plus one group per hard case present in ``tags`` (video_id -> scene tags)."""
    groups: dict[str, TrackingQuality] = {"all": summarise(scores)}
    if tags:
        for tag in HARD_CASES:
            chosen = [s for s in scores if tag in tags.get(s.video_id, ())]
            if chosen:
                groups[tag] = summarise(chosen)
        plain = [s for s in scores if not any(t in HARD_CASES for t in tags.get(s.video_id, ()))]
        if plain:
            groups["none_of_these"] = summarise(plain)
    return groups


def referent_objects(dataset, split: str, kinds: Sequence[str] = QUERY_KINDS) -> list[tuple[str, str]]:
    """Sorted unique (video_id, object_id) of the referents of ``split``'s query expressions."""
    found = set()
    for expression in dataset.iter_expressions(split=split):
        if expression.kind in kinds:
            objects = dataset.objects(expression.video_id)
            found.update((expression.video_id, o) for o in expression.object_ids if o in objects)
    return sorted(found)


def hard_case_sample(
    dataset, split: str, tags: Mapping[str, Sequence[str]], per_case: int, kinds: Sequence[str] = QUERY_KINDS
) -> list[tuple[str, str]]:
    """A deterministic subset of ``split``'s referents for slow trackers: the first ``per_case`` (in sorted order)
    of each hard case, plus ``per_case`` from videos with none of them; sorted, without repeats."""
    everything = referent_objects(dataset, split, kinds)
    chosen: set[tuple[str, str]] = set()
    for tag in HARD_CASES:
        chosen.update([r for r in everything if tag in tags.get(r[0], ())][:per_case])
    chosen.update([r for r in everything if not any(t in HARD_CASES for t in tags.get(r[0], ()))][:per_case])
    return sorted(chosen)


def evaluate_tracker(
    tracker,
    dataset,
    split: str,
    tags: Mapping[str, Sequence[str]] | None = None,
    kinds: Sequence[str] = QUERY_KINDS,
    objects: Sequence[tuple[str, str]] | None = None,
    threads: int | None = 1,
) -> tuple[dict[str, TrackingQuality], list[TrackScore]]:
    """Track every referent of ``split`` (or only ``objects``, (video_id, object_id) pairs) from its first
    ground-truth box; quality overall and per hard case. ``threads`` as in :func:`evaluate_detection`."""
    from sparrow.tsf.detection import torch_threads

    with torch_threads(threads):
        return _evaluate_tracker(tracker, dataset, split, tags, kinds, objects)


def _evaluate_tracker(tracker, dataset, split, tags, kinds, objects):
    scores = []
    frames_of: dict[str, np.ndarray] = {}
    for video_id, object_id in referent_objects(dataset, split, kinds) if objects is None else objects:
        truth = dataset.objects(video_id)[object_id].boxes
        key = next((t for t, b in enumerate(truth) if b is not None), None)
        if key is None:
            continue
        if video_id not in frames_of:
            frames_of.clear()
            frames_of[video_id] = dataset.load_frames(video_id)
        frames = frames_of[video_id]
        video = dataset.video(video_id)
        paths = [str(dataset.frame_path(video, t)) for t in range(video.num_frames)]
        track = tracker.track(frames, key, truth[key], frame_paths=paths, video_id=video_id)
        scores.append(score_track(video_id, object_id, track.boxes, truth, skip=[key]))
    return by_hard_case(scores, tags), scores


def referent_object(dataset, entry) -> str | None:
    """The referent an entry is scored against: the one its keyframe box overlapped most (``target_object``),
    else the expression's first object that exists."""
    objects = dataset.objects(entry.video_id)
    if entry.target_object in objects:
        return entry.target_object
    expression = next(e for e in dataset.expressions(entry.video_id) if e.expression_id == entry.expression_id)
    return next((o for o in expression.object_ids if o in objects), None)


def referent_boxes(dataset, entry) -> list | None:
    """Ground-truth boxes (one per video frame, None where absent) of :func:`referent_object`."""
    object_id = referent_object(dataset, entry)
    return None if object_id is None else list(dataset.objects(entry.video_id)[object_id].boxes)


def evaluate_entries(
    entries: Iterable, dataset, tags: Mapping[str, Sequence[str]] | None = None
) -> tuple[dict[str, TrackingQuality], list[TrackScore]]:
    """End-to-end box quality of pipeline entries (detector-initialised tracks) against their referent
    (:func:`referent_object`); an entry without a track (no detection) scores 0 on every visible frame."""
    scores = []
    for entry in entries:
        if entry is None or entry.key_source == "gt_mask":
            continue
        object_id = referent_object(dataset, entry)
        if object_id is None:
            continue
        clip = len(entry.track_boxes)
        truth = dataset.objects(entry.video_id)[object_id].boxes[entry.clip_start : entry.clip_start + clip]
        scores.append(score_track(entry.video_id, object_id, entry.track(), truth))
    return by_hard_case(scores, tags), scores


def example_rows(
    rows: Sequence[Mapping[str, Any]], tags: Mapping[str, Sequence[str]], per_case: int = 1, limit: int | None = None
) -> dict[str, Mapping[str, Any]]:
    """Index rows to show: the first of each hard case, then the first of each fallback that occurred (at most
    ``limit`` in all, taken alternately from the two lists so that both kinds appear)."""
    picked: dict[str, Mapping[str, Any]] = {}
    used: set[str] = set()
    for tag in HARD_CASES:
        hits = [
            r
            for r in rows
            if tag in tags.get(r["video_id"], ()) and not r["fallbacks"] and r["expression_id"] not in used
        ][:per_case]
        for i, row in enumerate(hits):
            picked[HARD_CASES[tag] + (f" {i + 1}" if per_case > 1 else "")] = row
            used.add(row["expression_id"])
    fallbacks: dict[str, Mapping[str, Any]] = {}
    for fallback in ("no_detection", "lost_track", "short_video", "no_target"):
        row = next((r for r in rows if fallback in r["fallbacks"] and r["expression_id"] not in used), None)
        if row is not None:
            fallbacks[f"fallback: {fallback}"] = row
            used.add(row["expression_id"])
    if limit is None:
        return {**picked, **fallbacks}
    cases, others = list(picked.items()), list(fallbacks.items())
    merged = [item for pair in zip(cases, others) for item in pair]
    merged += cases[len(others) :] + others[len(cases) :]
    return dict(merged[:limit])


def _shared_tail(a: list[str], b: list[str]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[-1 - n] == b[-1 - n]:
        n += 1
    return n


def read_hard_case_tags(curated_root: str | Path) -> dict[str, tuple[str, ...]]:
    """video_id -> hard-case tags of the SPARROW-Mini video behind each curated video.

    The curated ``meta.json`` names the generated root (``generated_root``); its ``manifest.json`` lists, per
    source, each video's ``key`` (``<split>/<id>`` or the tracking layout's path) and ``tags``. A curated id
    ``<source>/<ID>`` matches the record of its source whose key shares the longest unique tail of path parts
    with ``ID`` (the loaders drop the split folder and may rename a family folder); a VidSTG segment id
    ``<vid>_<start>_<end>`` matches by ``<vid>``. Returns {} for data that was not generated.
    """
    from sparrow.data.curated import CuratedDataset
    from sparrow.storage import read_json

    dataset = CuratedDataset(curated_root)
    generated = dataset.meta.get("generated_root") if isinstance(dataset.meta, dict) else None
    if not generated or not (Path(generated) / "manifest.json").is_file():
        return {}
    manifest = read_json(Path(generated) / "manifest.json")
    records: dict[str, list[tuple[list[str], tuple[str, ...]]]] = defaultdict(list)
    for source, rows in (manifest.get("videos") or {}).items():
        for row in rows:
            records[source].append((str(row.get("key", "")).split("/"), tuple(str(t) for t in row.get("tags", ()))))
    out: dict[str, tuple[str, ...]] = {}
    for video in dataset.iter_videos():
        parts = video.video_id.split("/")[1:]
        for candidate in (parts, parts[:-1] + [parts[-1].split("_", 1)[0]]):
            scored = sorted(
                ((_shared_tail(candidate, key), tags) for key, tags in records.get(video.source, ())),
                key=lambda x: -x[0],
            )
            if scored and scored[0][0] >= 1 and (len(scored) == 1 or scored[1][0] < scored[0][0]):
                out[video.video_id] = scored[0][1]
                break
    return out


def quality_table(results: Mapping[str, Mapping[str, TrackingQuality]]) -> list[dict[str, Any]]:
    """Rows (tracker, case, what the case is, tracks, mean IoU, success rate, absent frames reported lost) of
    ``{tracker: by_hard_case(...)}``, cases in report order."""
    names = {"all": "all tracks", **HARD_CASES, "none_of_these": "no hard case"}
    rows = []
    for tracker, groups in results.items():
        for case in [c for c in names if c in groups]:
            q = groups[case]
            rows.append(
                {
                    "tracker": tracker,
                    "case": case,
                    "hard case": names[case],
                    "tracks": q.tracks,
                    "mean_iou": q.mean_iou,
                    "success_rate": q.success_rate,
                    "absent_reported_lost": q.absent_reported_lost,
                }
            )
    return rows


#: The passes whose tracks are scored end to end: Ref-DAVIS17 ``valid``, the one notebook 04 uses at test time.
PIPELINE_SPLIT, PIPELINE_SOURCE = "valid", "ref-davis17"


def evaluate_trackers(
    tracker: TrackerConfig,
    dataset,
    quality: QualityConfig,
    tags: Mapping[str, Sequence[str]],
    runs: Mapping[TSFPass, TSFRun] | None = None,
) -> dict[str, dict[str, TrackingQuality]]:
    """``{tracker name: by_hard_case(...)}`` of the trackers notebook 02 compares on ``quality.split``.

    ``appearance``: the appearance+motion ``tracker`` on every referent; ``appearance (sample)`` and ``sam2 tiny
    (sample)``: it and the SAM2 video predictor on :func:`hard_case_sample` (SAM2 is slow on CPU); ``pipeline,
    <box> keyframe``: the tracks of the Ref-DAVIS17 ``valid`` passes among ``runs``, scored end to end.
    """
    split = quality.split
    sample = hard_case_sample(dataset, split, tags, quality.sam2_per_case)
    results = {
        "appearance": evaluate_tracker(build_tracker(tracker), dataset, split, tags)[0],
        "appearance (sample)": evaluate_tracker(build_tracker(tracker), dataset, split, tags, objects=sample)[0],
        "sam2 tiny (sample)": evaluate_tracker(
            build_tracker(replace(tracker, kind="sam2")), dataset, split, tags, objects=sample
        )[0],
    }
    for key, run in (runs or {}).items():
        if (key.split, key.source) == (PIPELINE_SPLIT, PIPELINE_SOURCE):
            results[f"pipeline, {key.box} keyframe"] = evaluate_entries(run.entries(), dataset, tags)[0]
    return results


def mean_iou_by_case(
    results: Mapping[str, Mapping[str, TrackingQuality]], digits: int = 3
) -> dict[str, dict[str, float]]:
    """``{case: {tracker: mean IoU}}`` of ``{tracker: by_hard_case(...)}``, cases in report order (for a grouped
    bar chart)."""
    cases = [c for c in ("all", *HARD_CASES, "none_of_these") if any(c in groups for groups in results.values())]
    return {
        case: {tracker: round(groups[case].mean_iou, digits) for tracker, groups in results.items() if case in groups}
        for case in cases
    }


#: The counts of each TSF run that notebook 02 records.
RUN_COUNTS = ("expressions", "videos", "skipped_kind", "lost_crop_frames")


def recorded_numbers(
    training: DetectorTraining,
    detection: DetectionQuality,
    split: str,
    runs: Mapping[TSFPass, TSFRun],
    tracking: Mapping[str, Mapping[str, TrackingQuality]],
    speed: Throughput,
) -> list[dict[str, Any]]:
    """Every number notebook 02 records, as keyword arguments of :meth:`sparrow.results.Recorder.add`. ``split`` is
    the held-out split ``detection`` was measured on; the throughput per video is set beside the paper's offline
    cost."""
    from sparrow.tsf.pipeline import FALLBACKS

    out: list[dict[str, Any]] = [
        {"name": "detector/train_steps", "value": training.steps, "unit": "steps"},
        {"name": "detector/train_samples", "value": training.samples, "unit": "count"},
        {"name": "detector/final_loss", "value": training.final_loss, "unit": "loss"},
    ]
    out += [
        {"name": f"detection/{split}/{name}", "value": value, "unit": "IoU" if name == "mean_iou" else ""}
        for name, value in detection.to_json().items()
    ]
    out += [
        {"name": f"tsf/{key}/{count}", "value": run.counts[count], "unit": "count"}
        for key, run in runs.items()
        for count in (*RUN_COUNTS, *FALLBACKS)
    ]
    for row in quality_table(tracking):
        prefix = f"tracking/{row['tracker']}/{row['case']}"
        out += [
            {"name": f"{prefix}/tracks", "value": row["tracks"], "unit": "count"},
            {"name": f"{prefix}/mean_iou", "value": row["mean_iou"], "unit": "IoU"},
            {"name": f"{prefix}/success_rate", "value": row["success_rate"], "unit": "fraction"},
        ]
    out.append({"name": "throughput/computed_expressions", "value": speed.computed_expressions, "unit": "count"})
    out += [
        {
            "name": f"throughput/{stage}_ms_per_expression",
            "value": ms,
            "unit": "ms",
            "note": "wall clock, machine-dependent",
        }
        for stage, ms in speed.per_expression_ms().items()
    ]
    out.append(
        {
            "name": "throughput/seconds_per_video",
            "value": speed.per_video_s,
            "unit": "s",
            "paper": PAPER_SECONDS_PER_VIDEO,
            "paper_source": "paper: 2.16 GPU-days for the offline TSF pass over about 30k videos",
            "note": "tiny models on 128-px CPU video vs the paper's GPU pass at full size: context, not a comparison",
        }
    )
    return out
