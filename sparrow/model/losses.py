"""Losses (docs/design.md §9): ``1.0 CE + 2.0 BCE + 0.5 Dice + 1.0 L_prop + 0.01 L_box``.

- CE: next-token cross-entropy over labelled positions (visual and TSF positions are ``IGNORE_INDEX``).
- BCE (LISA form): per mask and frame, the mean over **all** pixels of BCE-with-logits where pixels with target -1
  contribute 0 but stay in the denominator.
- Dice (LISA form): per mask and frame, ``1 - (2 sum(sig/1000 * y) + 1e-6) / (sum sig/1000 + sum y/1000 + 1e-6)``
  with -1 pixels zeroed in both.
- Aggregation: both summed over masks and SAM frames of the whole batch, divided by the number of (mask, frame)
  pairs (+1e-8).
- L_prop: multi-hot targets (proposal positive when its IoU with the tight box of the target mask unioned over time,
  exclusive max, normalised, is >= 0.3); BCE-with-logits on the final selector logits averaged over valid entries;
  the model averages it over samples.
- L_box (only with the box-regression head): over positive pairs, per token the mean L1 plus the mean (1 - GIoU)
  between head boxes and the target box; averaged over tokens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sparrow.data.boxes import mask_box
from sparrow.model.tokens import IGNORE_INDEX, MASK_IGNORE_INDEX


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over positions whose shifted label is not ``IGNORE_INDEX``."""
    shift_logits = logits[:, :-1].float()
    shift_labels = labels[:, 1:]
    if not (shift_labels != IGNORE_INDEX).any():
        return shift_logits.sum() * 0.0
    return F.cross_entropy(
        shift_logits.reshape(-1, shift_logits.shape[-1]), shift_labels.reshape(-1), ignore_index=IGNORE_INDEX
    )


def mask_bce_per_pair(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(M, H, W) logits and targets in {0, 1, -1} -> (M,) BCE, ignored pixels in the denominator."""
    valid = (targets != MASK_IGNORE_INDEX).float()
    loss = F.binary_cross_entropy_with_logits(logits.float(), targets.float().clamp(min=0), reduction="none")
    return (loss * valid).flatten(1).mean(dim=1)


def mask_dice_per_pair(
    logits: torch.Tensor, targets: torch.Tensor, scale: float = 1000.0, eps: float = 1e-6
) -> torch.Tensor:
    valid = (targets != MASK_IGNORE_INDEX).float()
    prob = logits.float().sigmoid() * valid
    y = targets.float().clamp(min=0) * valid
    prob, y = prob.flatten(1), y.flatten(1)
    numerator = 2 * (prob / scale * y).sum(-1)
    denominator = (prob / scale).sum(-1) + (y / scale).sum(-1)
    return 1 - (numerator + eps) / (denominator + eps)


def mask_losses(pred: list[torch.Tensor], target: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Summed BCE and Dice over every (mask, frame) pair of the batch and the pair count.

    ``pred[i]`` and ``target[i]``: (n_i, T, H, W); the first ``min`` of the two counts are compared (LISA).
    """
    bce_sum, dice_sum, pairs = None, None, 0
    for p, t in zip(pred, target):
        n = min(p.shape[0], t.shape[0])
        if n == 0:
            continue
        p = p[:n].flatten(0, 1)
        t = t[:n].flatten(0, 1).to(p.device)
        b = mask_bce_per_pair(p, t).sum()
        d = mask_dice_per_pair(p, t).sum()
        bce_sum = b if bce_sum is None else bce_sum + b
        dice_sum = d if dice_sum is None else dice_sum + d
        pairs += p.shape[0]
    return bce_sum, dice_sum, pairs


def union_box(mask: torch.Tensor) -> torch.Tensor | None:
    """Normalised xyxy (exclusive max) of a (T, H, W) or (H, W) target unioned over time, or None when empty."""
    return mask_box(mask, normalised=True, ignore_index=MASK_IGNORE_INDEX, union=True)


def proposal_targets(boxes: torch.Tensor, masks: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Multi-hot (n_targets, N_p): 1 where a proposal's IoU with the target's union box is >= the threshold."""
    from torchvision.ops import box_iou

    out = torch.zeros(masks.shape[0], boxes.shape[0], device=boxes.device)
    for i in range(masks.shape[0]):
        gt = union_box(masks[i])
        if gt is None or boxes.shape[0] == 0:
            continue
        out[i] = (box_iou(boxes.float(), gt.to(boxes.device).unsqueeze(0)).squeeze(1) >= iou_threshold).float()
    return out


def proposal_bce(logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    weights = torch.ones_like(targets) if valid is None else valid.float().unsqueeze(0).expand_as(targets)
    bce = F.binary_cross_entropy_with_logits(logits.float(), targets, reduction="none") * weights
    denom = weights.sum()
    return bce.sum() / denom if denom > 0 else logits.sum() * 0.0


def proposal_box_loss(pair_boxes: torch.Tensor, targets: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Mean over tokens of (mean L1 + mean (1 - GIoU)) on positive (token, proposal) pairs."""
    from torchvision.ops import generalized_box_iou

    l1, giou = [], []
    for i in range(targets.shape[0]):
        gt = union_box(masks[i])
        positive = targets[i] > 0.5
        if gt is None or not positive.any():
            continue
        pred = pair_boxes[i][positive].float()
        tgt = gt.to(pred.device).unsqueeze(0).expand_as(pred)
        l1.append((pred - tgt).abs().mean())
        giou.append((1 - torch.diag(generalized_box_iou(pred, tgt))).mean())
    if not l1:
        return pair_boxes.sum() * 0.0
    return torch.stack(l1).mean() + torch.stack(giou).mean()
