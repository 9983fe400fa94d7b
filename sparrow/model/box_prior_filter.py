"""The box prior filter (docs/design.md §7): keep selected boxes whose SAM2 box->mask agrees with the box.

For each selected box (normalised xyxy) and its SAM2 mask on frame 0 at the original size (binarised; the released
code thresholds the predictor's binary masks at 0.5, i.e. logits > 0):

- mask box = tight box with exclusive max; the box in pixels = normalised box (clamped to [0, 1]) x (W, H);
- ``IoU`` = box IoU (areas and union clamped at 1e-6);
- ``area_consistency = 1 / (1 + |log(a_mask / a_box)|)``, ``a_mask`` = fraction of the image covered (>= 1e-6),
  ``a_box`` = normalised width x height (each >= 1e-6);
- ``score = 0.8 IoU + 0.2 area_consistency``, x 0.2 if ``a_mask < 1e-4`` or ``a_mask > 0.9``; an empty mask
  scores 0;
- keep ``score >= min_score`` (0.35), else the single best; cap at ``max_keep`` by score (evaluation scripts: 1).

Paper vs code: off in the model and in training by default, on in ``chat.py`` and every evaluation script; the kit
follows that split (``SelectorSpec.box_prior_filter_train`` False, ``box_prior_filter_test`` True). When SAM2 fails
the boxes are kept unfiltered (released behaviour), with a warning.
"""

from __future__ import annotations

import torch

from sparrow.data.boxes import mask_box


def _box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    iw = (torch.minimum(a[2], b[2]) - torch.maximum(a[0], b[0])).clamp(min=0)
    ih = (torch.minimum(a[3], b[3]) - torch.maximum(a[1], b[1])).clamp(min=0)
    inter = iw * ih
    area_a = ((a[2] - a[0]) * (a[3] - a[1])).clamp(min=1e-6)
    area_b = ((b[2] - b[0]) * (b[3] - b[1])).clamp(min=1e-6)
    return inter / (area_a + area_b - inter).clamp(min=1e-6)


def prior_scores(boxes: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Scores (n,) of normalised boxes (n, 4) against bool masks (n, H, W)."""
    scores = torch.zeros(boxes.shape[0], dtype=torch.float32)
    if boxes.numel() == 0:
        return scores
    h, w = masks.shape[-2:]
    for i in range(min(boxes.shape[0], masks.shape[0])):
        mask = masks[i].bool()
        mbox = mask_box(mask)
        if mbox is None:
            continue
        box = boxes[i].detach().float().cpu().clamp(0, 1)
        box_px = torch.stack([box[0] * w, box[1] * h, box[2] * w, box[3] * h])
        iou = _box_iou(box_px, mbox.cpu())
        a_mask = mask.float().mean().clamp(min=1e-6).cpu()
        a_box = ((box[2] - box[0]).clamp(min=1e-6) * (box[3] - box[1]).clamp(min=1e-6)).clamp(min=1e-6)
        score = 0.8 * iou + 0.2 / (1 + torch.log(a_mask / a_box).abs())
        if a_mask < 1e-4 or a_mask > 0.9:
            score = score * 0.2
        scores[i] = score
    return scores


def filter_boxes(boxes: torch.Tensor, scores: torch.Tensor, min_score: float, max_keep: int) -> torch.Tensor:
    """The kept rows of ``boxes`` (index order, or score order when capped)."""
    if boxes.shape[0] == 0:
        return boxes
    if scores.numel() == 0:
        return boxes[:1]
    keep = (scores >= min_score).nonzero(as_tuple=False).squeeze(1)
    if keep.numel() == 0:
        keep = scores.topk(1).indices
    if max_keep > 0 and keep.numel() > max_keep:
        keep = keep[scores[keep].topk(max_keep).indices]
    return boxes[keep.to(boxes.device)]
