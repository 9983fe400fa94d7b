"""The data contract between the dataset, the collator, the model and the trainer.

- :class:`SparrowExample`: one (video, expression or QA) pair with its sampled frames and target masks (what
  :class:`sparrow.model.dataset.SparrowDataset` yields).
- :class:`SparrowBatch`: a collated batch (what ``model(batch)`` takes).
- :class:`SparrowOutput`: the forward result: ``loss`` and the per-term ``losses`` (always the keys ``ce``, ``bce``,
  ``dice``, ``prop``, ``box``, weighted as they enter ``loss``; the proposer stage adds ``det_cls``, ``det_l1``,
  ``det_giou``).
- :class:`Prediction`: what ``model.predict(frames, text)`` returns.

Frames inside batches are float tensors in [0, 1] already resized for their encoder; each encoder normalises.
Target masks stay at the video's original size (the released code upsamples logits to it), with -1 ignore.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np
import torch

LOSS_KEYS: tuple[str, ...] = ("ce", "bce", "dice", "prop", "box")


@dataclass
class SparrowExample:
    video_id: str
    query_id: str
    kind: str  # "expression", "gcg" (a grounded caption) or "qa"
    text: str  # the referring expression, or the question (QA, grounded caption)
    answer: str | None  # QA / grounded caption answer (None: a template answer is used for expressions)
    frames: np.ndarray  # (T_enc, H, W, 3) uint8 encoder frames
    sam_frames: np.ndarray  # (T_sam, H, W, 3) uint8
    target_masks: np.ndarray  # (n_targets, T_sam, H, W) int8 in {0, 1, -1}
    object_boxes: np.ndarray  # (n_objects, 4) float32 normalised xyxy of every object on the first SAM frame
    frame_indices: list[int] = field(default_factory=list)
    sam_frame_indices: list[int] = field(default_factory=list)


@dataclass
class SparrowBatch:
    input_ids: torch.Tensor  # (B, L) with IMAGE_TOKEN_INDEX / TSF_TOKEN_INDEX placeholders, right-padded
    labels: torch.Tensor  # (B, L) IGNORE_INDEX outside answers
    attention_mask: torch.Tensor  # (B, L)
    frames: torch.Tensor  # (B, T_llm, 3, S, S) spatial-encoder frames
    sam_frames: torch.Tensor  # (B, T_sam, 3, S_sam, S_sam)
    target_masks: list[torch.Tensor]  # per sample (n_targets, T_sam, H, W) float in {0, 1, -1}
    object_boxes: list[torch.Tensor]  # per sample (n_objects, 4) normalised xyxy on SAM frame 0
    orig_sizes: list[tuple[int, int]]
    temporal_frames: torch.Tensor | None = None  # (B, T_enc, 3, S_t, S_t) (VideoGLaMM)
    tsf_crops: list[torch.Tensor | None] | None = None  # per sample (n, 3, S, S) in [0, 1]
    video_ids: list[str] = field(default_factory=list)
    query_ids: list[str] = field(default_factory=list)
    stage: str = "stage1"
    texts: list[str] = field(default_factory=list)  # each sample's referring expression or QA question
    # per sample, the text each [SEG] of its answer stands for (conversation.seg_texts): what the location
    # channel grounds for that token
    seg_texts: list[list[str]] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    def to(self, device: torch.device | str) -> SparrowBatch:
        def move(value):
            if torch.is_tensor(value):
                return value.to(device)
            if isinstance(value, list):
                return [move(v) for v in value]
            return value

        return SparrowBatch(**{f.name: move(getattr(self, f.name)) for f in fields(self)})


@dataclass
class SparrowOutput:
    loss: torch.Tensor
    losses: dict[str, torch.Tensor]
    mask_logits: list[torch.Tensor] = field(default_factory=list)  # per sample (n_seg, T_sam, H, W)
    selected_boxes: list[list[torch.Tensor]] = field(default_factory=list)  # per sample, per [SEG]: (n, 4) norm xyxy


@dataclass
class Prediction:
    masks: np.ndarray  # (T, H, W) bool: the first [SEG]'s mask per frame (evaluation convention)
    boxes: np.ndarray  # (T, 4) float pixel xyxy (exclusive max) of each frame's mask; NaN where empty
    answer: str  # the generated answer text
    masks_per_seg: np.ndarray  # (n_seg, T, H, W) bool
    prompt_boxes: list[np.ndarray]  # per [SEG]: (n, 4) pixel xyxy boxes that prompted SAM2 (empty without guidance)
    seg_found: bool
