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
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sparrow.tsf.detection import QUERY_KINDS, DetectorConfig, GroundingDetector, choose_keyframe

#: The generator's scene tags for the hard cases the issue names, in report order.
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


def average_precision(predictions: Iterable[tuple[Any, float, Sequence[float]]],
                      ground_truth: Mapping[Any, Sequence[Sequence[float]]], threshold: float = 0.5) -> float:
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
        candidates = [(box_iou(box, gt), j) for j, gt in enumerate(ground_truth.get(image, ()))
                      if j not in matched[image]]
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


def evaluate_detection(detector: GroundingDetector, dataset, split: str, config: DetectorConfig,
                       kinds: Sequence[str] = QUERY_KINDS, score_floor: float = 0.05) -> DetectionQuality:
    """Detection quality on the keyframes the pipeline would use for ``split`` (see the module docstring)."""
    ious, hits = [], []
    predictions: list[tuple[str, float, Sequence[float]]] = []
    truth: dict[str, list] = {}
    total = no_detection = 0
    by_video: dict[str, list] = defaultdict(list)
    for expression in dataset.iter_expressions(split=split):
        if expression.kind in kinds and expression.text.strip() and expression.object_ids:
            by_video[expression.video_id].append(expression)
    for video_id in sorted(by_video):
        frames = dataset.load_frames(video_id)
        objects = dataset.objects(video_id)
        for expression in by_video[video_id]:
            total += 1
            start, end = (expression.frame_span or (0, frames.shape[0]))
            start, end = max(0, start), min(frames.shape[0], end)
            if end <= start:
                start, end = 0, frames.shape[0]
            frame, found = choose_keyframe(detector, frames[start:end], expression.text, config)
            t = start + frame
            gts = [objects[o].boxes[t] for o in expression.object_ids if o in objects and objects[o].boxes[t] is not None]
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
        expressions=total, with_target=len(ious), mean_iou=float(np.mean(ious)) if ious else 0.0,
        acc50=float(np.mean(hits)) if hits else 0.0, ap50=average_precision(predictions, truth), no_detection=no_detection)


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


def score_track(video_id: str, object_id: str, predicted: Sequence[Sequence[float] | None],
                truth: Sequence[Sequence[float] | None], skip: Iterable[int] = ()) -> TrackScore:
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
        visible_frames=sum(len(s.ious) for s in scores), absent_frames=len(absent),
        absent_reported_lost=float(np.mean(absent)) if absent else None)


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


def evaluate_tracker(tracker, dataset, split: str, tags: Mapping[str, Sequence[str]] | None = None,
                     kinds: Sequence[str] = QUERY_KINDS) -> tuple[dict[str, TrackingQuality], list[TrackScore]]:
    """Track every referent of ``split`` from its first ground-truth box; quality overall and per hard case."""
    scores = []
    frames_of: dict[str, np.ndarray] = {}
    for video_id, object_id in referent_objects(dataset, split, kinds):
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


def evaluate_entries(entries: Iterable, dataset, tags: Mapping[str, Sequence[str]] | None = None
                     ) -> tuple[dict[str, TrackingQuality], list[TrackScore]]:
    """End-to-end box quality of pipeline entries (detector-initialised tracks) against their referent.

    The referent is the one the keyframe box overlapped most (``target_object``), else the first one; an entry
    without a track (no detection) scores 0 on every visible frame.
    """
    scores = []
    for entry in entries:
        if entry is None or entry.key_source == "gt_mask":
            continue
        objects = dataset.objects(entry.video_id)
        expression = next(e for e in dataset.expressions(entry.video_id) if e.expression_id == entry.expression_id)
        object_id = entry.target_object or next((o for o in expression.object_ids if o in objects), None)
        if object_id is None:
            continue
        clip = len(entry.track_boxes)
        truth = objects[object_id].boxes[entry.clip_start:entry.clip_start + clip]
        scores.append(score_track(entry.video_id, object_id, entry.track(), truth))
    return by_hard_case(scores, tags), scores


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
            scored = sorted(((_shared_tail(candidate, key), tags) for key, tags in records.get(video.source, ())),
                            key=lambda x: -x[0])
            if scored and scored[0][0] >= 1 and (len(scored) == 1 or scored[1][0] < scored[0][0]):
                out[video.video_id] = scored[0][1]
                break
    return out
