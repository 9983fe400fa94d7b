"""SparrowDataset: a torch Dataset over the (video, expression) pairs of a curated dataset split.

Each item is a :class:`SparrowExample`: the encoder frames and SAM frames sampled as the host does
(:func:`sparrow.model.frames.sample_training_frames`), the target masks on the SAM frames (one target per expression:
the union of its referents, as MeViS scores multi-object expressions), and the boxes of every object on the first
SAM frame (the class-agnostic proposer's pretraining targets). Only the sampled frames are decoded.

Grounded captions of the GCG sources (:data:`GCG_SOURCES`, kind ``caption`` with phrase spans) become grounded
caption conversations (kind ``gcg``): one of the GCG questions, the caption with ``<p> phrase </p> [SEG]`` per phrase
as the answer (:func:`sparrow.model.conversation.grounded_caption_turn`), and one target per phrase (the union of its
ids). They make up :data:`GCG_SHARE` of the items (repeated or thinned evenly to that share), the share of video GCG
data in the released recipe's mixture. Other captions (tracking sources) stay referring items with a union target, as
the released tracking loaders use them.

QA records (``include_qa=True``) become items too: their answer's ``[SEG]`` count decides the targets (one per
object when the counts agree, the union when the answer has one ``[SEG]``; otherwise per-object masks for the first
ones and ignore-only (-1) masks for the rest, as the released GCG loaders pad with -1).
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from sparrow.data.curated import CuratedDataset
from sparrow.data.indices import evenly_spread
from sparrow.data.records import ExpressionRecord, VideoRecord
from sparrow.model.batch import SparrowExample
from sparrow.model.config import ModelConfig
from sparrow.model.conversation import grounded_caption_turn
from sparrow.model.frames import sample_training_frames
from sparrow.model.tokens import MASK_IGNORE_INDEX, SEG_TOKEN
from sparrow.storage import DataError

FRAME_CACHE_BYTES = 256 << 20  # decoded frames kept per dataset (SPARROW-Mini's training frames take ~190 MiB)
# Sources whose captions describe the whole video (VideoGLaMM's GCG sets); the released mixtures train these, and only
# these, as grounded caption conversations.
GCG_SOURCES = ("videogcg",)
# SPARROW's released mixture samples its 25 datasets uniformly, 5 of them video GCG sets (anet_gcg, video_gcg,
# mevis_gcg, vidstg_gcg, hcstvg_gcg): one item in five is a grounded caption.
GCG_SHARE = 0.2


class SparrowDataset(Dataset):
    """``frame_cache_bytes`` bounds the decoded frames kept in memory (least recently used first out; 0: none):
    a video's frames are decoded from JPEG once, not once per expression and pass.

    ``gcg_share``: the share of grounded caption items (None: each caption once; 0: none)."""

    def __init__(
        self,
        curated_root: str | Path,
        split: str,
        cfg: ModelConfig,
        sources: list[str] | None = None,
        include_qa: bool = False,
        include_expressions: bool = True,
        frame_cache_bytes: int = FRAME_CACHE_BYTES,
        gcg_share: float | None = GCG_SHARE,
    ):
        self.curated = CuratedDataset(curated_root)
        self.frame_cache_bytes = int(frame_cache_bytes)
        self._frames: OrderedDict[tuple[str, int], np.ndarray] = OrderedDict()
        self._frame_bytes = 0
        self.cfg = cfg
        self.split = split
        videos = {
            v.video_id: v for v in self.curated.iter_videos(split=split) if sources is None or v.source in sources
        }
        self.items: list[tuple[str, object]] = []
        captions: list[tuple[str, object]] = []
        if include_expressions:
            for exp in self.curated.iter_expressions():
                if exp.video_id not in videos:
                    continue
                if exp.kind == "caption" and exp.phrases and videos[exp.video_id].source in GCG_SOURCES:
                    captions.append(("gcg", exp))
                else:
                    self.items.append(("expression", exp))
        self.items += mix_share(captions, len(self.items), gcg_share)
        if include_qa:
            for qa in self.curated.iter_qa():
                if qa.video_id in videos:
                    self.items.append(("qa", qa))
        if not self.items:
            raise DataError(
                f"{self.curated.root}: no items for split {split!r}" + (f" and sources {sources}" if sources else "")
            )

    def __len__(self) -> int:
        return len(self.items)

    def texts(self) -> list[str]:
        """Every expression, question and answer text (for a tiny tokenizer's ``extra_words``)."""
        out = []
        for kind, rec in self.items:
            if kind == "gcg":
                out.extend(self._gcg_turn(rec))
            else:
                out.extend([rec.text] if kind == "expression" else [rec.question, rec.answer])
        return out

    def _gcg_turn(self, rec: ExpressionRecord) -> tuple[str, str]:
        return grounded_caption_turn(rec.text, rec.phrases or [], rec.expression_id, self.cfg.max_seg_tokens)

    def load_frames(self, video_id: str, indices: list[int]) -> np.ndarray:
        """Frames ``indices`` of a video as (n, H, W, 3) uint8, through the decoded-frame cache."""
        missing = [t for t in dict.fromkeys(indices) if (video_id, t) not in self._frames]
        if missing:
            for t, frame in zip(missing, self.curated.load_frames(video_id, missing)):
                frame.flags.writeable = False  # shared by every item that uses it
                self._frames[(video_id, t)] = frame
                self._frame_bytes += frame.nbytes
        out = np.stack([self._frames[(video_id, t)] for t in indices])
        for t in indices:
            self._frames.move_to_end((video_id, t))
        while self._frame_bytes > self.frame_cache_bytes and self._frames:
            _, old = self._frames.popitem(last=False)
            self._frame_bytes -= old.nbytes
        return out

    def _object_masks(self, video: VideoRecord, object_ids: list[str], indices: list[int]) -> np.ndarray:
        from sparrow.data.rle import decode_rle

        objects = self.curated.objects(video.video_id)
        out = np.zeros((len(object_ids), len(indices), video.height, video.width), dtype=np.int8)
        for i, oid in enumerate(object_ids):
            if oid not in objects:
                raise DataError(f"{self.curated.root}: {video.video_id} has no object {oid!r}")
            masks = objects[oid].masks
            for j, t in enumerate(indices):
                if masks[t] is not None:
                    out[i, j] = decode_rle(masks[t], (video.height, video.width))
        return out

    def _object_boxes(self, video: VideoRecord, frame: int) -> np.ndarray:
        rows = []
        for obj in self.curated.objects(video.video_id).values():
            box = obj.boxes[frame] if frame < len(obj.boxes) else None
            if box is None:
                continue
            x0, y0, x1, y1 = box
            rows.append([x0 / video.width, y0 / video.height, x1 / video.width, y1 / video.height])
        return np.clip(np.asarray(rows, dtype=np.float32).reshape(-1, 4), 0.0, 1.0)

    def __getitem__(self, index: int) -> SparrowExample:
        kind, rec = self.items[index]
        video = self.curated.video(rec.video_id)
        key = rec.qa_id if kind == "qa" else rec.expression_id
        cfg = self.cfg
        enc_idx, sam_idx = sample_training_frames(video.num_frames, cfg.num_frames, cfg.num_sam_frames, cfg.host, key)
        wanted = sorted(set(enc_idx) | set(sam_idx))
        loaded = self.load_frames(video.video_id, wanted)
        pos = {t: i for i, t in enumerate(wanted)}
        frames = loaded[[pos[t] for t in enc_idx]]
        sam_frames = loaded[[pos[t] for t in sam_idx]]
        if kind == "expression":
            per_object = self._object_masks(video, rec.object_ids, sam_idx)
            targets = (
                per_object.max(axis=0, keepdims=True)
                if len(per_object)
                else np.zeros((1, len(sam_idx), video.height, video.width), np.int8)
            )
            text, answer = rec.text, None
        elif kind == "gcg":
            targets = self._gcg_targets(video, rec, sam_idx)
            text, answer = self._gcg_turn(rec)
        else:
            targets = self._qa_targets(video, rec, sam_idx)
            text, answer = rec.question, rec.answer
        return SparrowExample(
            video_id=video.video_id,
            query_id=key,
            kind=kind,
            text=text,
            answer=answer,
            frames=frames,
            sam_frames=sam_frames,
            target_masks=targets,
            object_boxes=self._object_boxes(video, sam_idx[0]),
            frame_indices=enc_idx,
            sam_frame_indices=sam_idx,
        )

    def _qa_targets(self, video: VideoRecord, rec, sam_idx: list[int]) -> np.ndarray:
        n_seg = min(rec.answer.count(SEG_TOKEN), self.cfg.max_seg_tokens)
        shape = (len(sam_idx), video.height, video.width)
        if n_seg == 0:
            return np.zeros((0,) + shape, np.int8)
        per_object = self._object_masks(video, list(rec.object_ids), sam_idx)
        if n_seg == 1 and len(per_object) > 1:
            return per_object.max(axis=0, keepdims=True)
        out = np.full((n_seg,) + shape, MASK_IGNORE_INDEX, np.int8)
        out[: min(n_seg, len(per_object))] = per_object[:n_seg]
        return out

    def _gcg_targets(self, video: VideoRecord, rec: ExpressionRecord, sam_idx: list[int]) -> np.ndarray:
        """One target per marked phrase (the first ``max_seg_tokens``): the union of the phrase's objects."""
        spans = rec.phrase_list()[: self.cfg.max_seg_tokens]
        return np.stack([self._object_masks(video, ids, sam_idx).max(axis=0) for _, ids in spans])


def mix_share(items: list, others: int, share: float | None) -> list:
    """``items`` repeated in turn or thinned evenly so that they are ``share`` of ``others + len(result)`` items
    (all of them once for None or when there is nothing else)."""
    if share is None or not items or not others:
        return list(items)
    if not 0.0 <= share < 1.0:
        raise ValueError(f"a share must be in [0, 1), got {share}")
    wanted = round(share / (1.0 - share) * others)
    if wanted <= len(items):
        return evenly_spread(items, wanted) if wanted else []
    return [items[i % len(items)] for i in range(wanted)]
