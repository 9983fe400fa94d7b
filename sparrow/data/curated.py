"""Reading a curated dataset (the output of ``sparrow curate``).

Records are streamed from JSON Lines; per-video lookups build small indexes on first use. Masks are decoded
lazily with pycocotools, frames with PIL.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterator
from functools import cached_property
from itertools import chain
from pathlib import Path

import numpy as np

from sparrow.data.records import ExpressionRecord, ObjectRecord, QARecord, VideoRecord
from sparrow.storage import DataError, iter_jsonl, read_json, sha256_file


class CuratedDataset:
    """A curated dataset folder: ``videos.jsonl``, ``objects.jsonl``, ``expressions.jsonl``, ``qa.jsonl``."""

    FILES = ("videos.jsonl", "objects.jsonl", "expressions.jsonl", "qa.jsonl", "meta.json")

    def __init__(self, root: str | Path):
        self.root = Path(root)
        missing = [name for name in self.FILES if not (self.root / name).is_file()]
        if missing:
            raise DataError(f"{self.root}: not a curated dataset (missing {', '.join(missing)})")

    # -- streaming -------------------------------------------------------------------------------------------
    def iter_videos(self, source: str | None = None, split: str | None = None) -> Iterator[VideoRecord]:
        for row in iter_jsonl(self.root / "videos.jsonl"):
            rec = VideoRecord.from_json(row)
            if (source is None or rec.source == source) and (split is None or rec.split == split):
                yield rec

    def iter_objects(self) -> Iterator[ObjectRecord]:
        """Object records; a box that is not finite (NaN, inf) is a :class:`DataError` naming the file, video,
        object and frame, here rather than deep inside a matcher that would fail without naming the item."""
        path = self.root / "objects.jsonl"
        for row in iter_jsonl(path):
            rec = ObjectRecord.from_json(row)
            if not all(map(math.isfinite, chain.from_iterable(b for b in rec.boxes if b is not None))):
                t = next(t for t, b in enumerate(rec.boxes) if b is not None and not all(map(math.isfinite, b)))
                raise DataError(
                    f"{path}: video {rec.video_id} object {rec.object_id} frame {t}: box {rec.boxes[t]} is not finite"
                )
            yield rec

    def iter_expressions(self, source: str | None = None, split: str | None = None) -> Iterator[ExpressionRecord]:
        keep = None if source is None and split is None else {v.video_id for v in self.iter_videos(source, split)}
        for row in iter_jsonl(self.root / "expressions.jsonl"):
            rec = ExpressionRecord.from_json(row)
            if keep is None or rec.video_id in keep:
                yield rec

    def iter_qa(self) -> Iterator[QARecord]:
        for row in iter_jsonl(self.root / "qa.jsonl"):
            yield QARecord.from_json(row)

    # -- lookups ---------------------------------------------------------------------------------------------
    @cached_property
    def meta(self) -> dict:
        return read_json(self.root / "meta.json")

    @cached_property
    def report(self) -> dict:
        path = self.root / "report.json"
        return read_json(path) if path.is_file() else {}

    @cached_property
    def _videos(self) -> dict[str, VideoRecord]:
        return {v.video_id: v for v in self.iter_videos()}

    @cached_property
    def _objects(self) -> dict[str, dict[str, ObjectRecord]]:
        index: dict[str, dict[str, ObjectRecord]] = defaultdict(dict)
        for obj in self.iter_objects():
            index[obj.video_id][obj.object_id] = obj
        return dict(index)

    @cached_property
    def _expressions(self) -> dict[str, list[ExpressionRecord]]:
        index: dict[str, list[ExpressionRecord]] = defaultdict(list)
        for exp in self.iter_expressions():
            index[exp.video_id].append(exp)
        return dict(index)

    def video(self, video_id: str) -> VideoRecord:
        try:
            return self._videos[video_id]
        except KeyError:
            raise KeyError(f"{self.root}: no video {video_id!r}") from None

    def objects(self, video_id: str) -> dict[str, ObjectRecord]:
        return self._objects.get(video_id, {})

    def expressions(self, video_id: str) -> list[ExpressionRecord]:
        return self._expressions.get(video_id, [])

    def sources(self) -> list[str]:
        return sorted({v.source for v in self._videos.values()})

    def splits(self, source: str | None = None) -> list[str]:
        return sorted({v.split for v in self._videos.values() if source is None or v.source == source})

    # -- pixels ----------------------------------------------------------------------------------------------
    def frame_path(self, video: VideoRecord, index: int) -> Path:
        return (self.root / video.frame_paths[index]).resolve()

    def load_frames(self, video_id: str, indices: list[int] | None = None) -> np.ndarray:
        """RGB frames as a (T, H, W, 3) uint8 array."""
        from PIL import Image

        video = self.video(video_id)
        indices = list(range(video.num_frames)) if indices is None else indices
        frames = []
        for i in indices:
            path = self.frame_path(video, i)
            try:
                with Image.open(path) as img:
                    frames.append(np.asarray(img.convert("RGB")))
            except (OSError, ValueError) as exc:
                raise DataError(f"{path}: cannot read frame {i} of {video_id} ({exc})") from exc
        return np.stack(frames) if frames else np.zeros((0, video.height, video.width, 3), np.uint8)

    def object_masks(self, video_id: str, object_id: str) -> np.ndarray:
        """(T, H, W) bool masks of one object; frames where it is absent are all False."""
        from sparrow.data.rle import decode_rle

        video = self.video(video_id)
        obj = self.objects(video_id)[object_id]
        out = np.zeros((video.num_frames, video.height, video.width), dtype=bool)
        for t, rle in enumerate(obj.masks):
            if rle is not None:
                out[t] = decode_rle(rle)
        return out

    def phrase_masks(self, expression: ExpressionRecord) -> list[np.ndarray]:
        """(T, H, W) masks of each phrase of a grounded caption, in text order: the union over the phrase's ids
        (:meth:`~sparrow.data.records.ExpressionRecord.phrase_list` gives the phrase texts)."""
        return [self.union_masks(expression.video_id, ids) for _, ids in expression.phrase_list()]

    def expression_masks(self, expression: ExpressionRecord) -> np.ndarray:
        """Union (logical OR) over the referent's objects, as MeViS scores multi-object expressions."""
        return self.union_masks(expression.video_id, expression.object_ids)

    def union_masks(self, video_id: str, object_ids: list[str]) -> np.ndarray:
        """(T, H, W) logical OR of the masks of ``object_ids`` (all False for no object)."""
        video = self.video(video_id)
        union = np.zeros((video.num_frames, video.height, video.width), dtype=bool)
        for object_id in object_ids:
            union |= self.object_masks(video_id, object_id)
        return union


RECORD_FILES = ("videos.jsonl", "objects.jsonl", "expressions.jsonl")
_RECORD_FINGERPRINTS: dict[tuple, str] = {}


def records_fingerprint(root: str | Path) -> str:
    """SHA-256 over the bytes of a curated set's record files (not the frames, which the records name): the data
    part of every cache key (trained runs, predictions, TSF runs), so a regenerated dataset is noticed.

    Remembered per file state (path, size, modification time): real releases' records are large and every
    benchmark of every model asks."""
    root = Path(root)
    files = [root / name for name in RECORD_FILES]
    missing = [p.name for p in files if not p.is_file()]
    if missing:
        raise DataError(f"{root}: not a curated dataset (missing {', '.join(missing)})")
    state = (str(root.resolve()), *((p.stat().st_size, p.stat().st_mtime_ns) for p in files))
    if state not in _RECORD_FINGERPRINTS:
        _RECORD_FINGERPRINTS[state] = sha256_file(*files)
    return _RECORD_FINGERPRINTS[state]
