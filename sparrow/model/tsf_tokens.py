"""TSF tokens inside the model: crops from ground-truth masks, K-means medoids, and the crops of given boxes.

Paper vs released code: the paper builds TSF crops offline (GroundingDINO -> CLDTracker -> crop -> K-means, see
``sparrow.tsf``); the released training builds them from ground-truth masks (``gt_mask_crops``, the default here),
and at inference TSF is off unless ``ModelConfig.tsf_at_test`` is set (then crops come from given per-frame boxes,
``box_crops``, or precomputed TSF embeddings).

``gt_mask_crops`` (docs/design.md §4.2 b), per sample:

1. source frames = the sample's encoder (context) frames at the spatial encoder's size;
2. ``n = min(num_frames, num_src)`` crops at source indices ``linspace(0, num_src - 1, n)`` (int);
3. aligned SAM frame ``m = round(s / (num_src - 1) * (T_sam - 1))`` clamped (0 when either length is 1);
4. box = tight box (exclusive max, normalised by the mask's own size) of the first target whose mask has a positive,
   non-ignore pixel on frame m;
5. none: reuse the previous box, or the full frame (0, 0, 1, 1) if there is none yet;
6. pixel box ``x1p = clamp(floor(x1 W), 0, W - 1)``, ``x2p = max(x1p + 1, min(W, ceil(x2 W)))`` (same for y);
7. crop and resize back to S x S (bilinear, ``align_corners=False``); an empty crop falls back to the whole frame.

The released code crops the normalised tensor; cropping the [0, 1] frame and normalising later is the same because
normalisation is per-channel affine and commutes with bilinear resizing.

``kmeans_select_representatives`` (docs/design.md §4.3): ``k = max(1, min(K, n))``; ``n <= k`` returns all rows;
float32; initial centres at ``round(linspace(0, n - 1, k))``; up to ``iters`` iterations of nearest-centre assignment
(``cdist``, ties to the lowest index), mean update (an empty cluster keeps its centre), early stop when ``allclose``
(atol = rtol = 1e-4); returns, in centre order, the nearest actual sample of each centre (two centres may return the
same sample).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from sparrow.model.tokens import MASK_IGNORE_INDEX


def _linspace_int(start: float, stop: float, n: int) -> list[int]:
    return [int(v) for v in np.linspace(start, stop, n).astype(int)]


def _crop_resize(frame: torch.Tensor, box: tuple[float, float, float, float], size: int) -> torch.Tensor:
    _, h, w = frame.shape
    x1, y1, x2, y2 = box
    x1p = min(max(math.floor(x1 * w), 0), w - 1)
    y1p = min(max(math.floor(y1 * h), 0), h - 1)
    x2p = max(x1p + 1, min(w, math.ceil(x2 * w)))
    y2p = max(y1p + 1, min(h, math.ceil(y2 * h)))
    crop = frame[:, y1p:y2p, x1p:x2p]
    if crop.numel() == 0:
        crop = frame
    return F.interpolate(crop.unsqueeze(0), size=(size, size), mode="bilinear", align_corners=False)[0]


def _positive_box(mask: torch.Tensor) -> tuple[float, float, float, float] | None:
    positive = (mask > 0) & (mask != MASK_IGNORE_INDEX)
    idx = positive.nonzero(as_tuple=False)
    if idx.numel() == 0:
        return None
    h, w = mask.shape
    y, x = idx[:, 0], idx[:, 1]
    return (float(x.min()) / w, float(y.min()) / h, float(x.max() + 1) / w, float(y.max() + 1) / h)


def gt_mask_crops(source_frames: torch.Tensor, target_masks: torch.Tensor, num_frames: int) -> torch.Tensor:
    """Crops (n, 3, S, S) of ``source_frames`` (num_src, 3, S, S) at the boxes of ``target_masks`` (n_t, T_sam, H, W)."""
    num_src, _, s, _ = source_frames.shape
    n = min(num_frames, num_src)
    t_sam = target_masks.shape[1] if target_masks.dim() == 4 else 0
    crops = []
    previous = None
    for src in _linspace_int(0, num_src - 1, n):
        if num_src == 1 or t_sam <= 1:
            m = 0
        else:
            m = min(max(int(round(src / (num_src - 1) * (t_sam - 1))), 0), t_sam - 1)
        box = None
        for target in range(target_masks.shape[0] if t_sam else 0):
            box = _positive_box(target_masks[target, m])
            if box is not None:
                break
        if box is None:
            box = previous if previous is not None else (0.0, 0.0, 1.0, 1.0)
        previous = box
        crops.append(_crop_resize(source_frames[src], box, s))
    return torch.stack(crops) if crops else source_frames.new_zeros((0,) + tuple(source_frames.shape[1:]))


def box_crops(frames: torch.Tensor, boxes_px: np.ndarray, size: int, num_frames: int) -> torch.Tensor:
    """Crops at given per-frame pixel boxes (xyxy) of raw frames (T, 3, H, W), at the encoder-frame indices (§4.4).

    Frames ``linspace(0, T - 1, num_frames)`` (all frames if T <= num_frames); frame ``i`` uses box row
    ``min(i, L - 1)``; floor of x1, y1 and ceil of x2, y2, clamped as ``gt_mask_crops``.
    """
    t, _, h, w = frames.shape
    boxes_px = np.asarray(boxes_px, dtype=np.float64).reshape(-1, 4)
    if boxes_px.shape[0] == 0:
        raise ValueError("box_crops needs at least one box")
    indices = list(range(t)) if t <= num_frames else _linspace_int(0, t - 1, num_frames)
    crops = []
    for i in indices:
        x1, y1, x2, y2 = boxes_px[min(i, boxes_px.shape[0] - 1)]
        crops.append(_crop_resize(frames[i], (x1 / w, y1 / h, x2 / w, y2 / h), size))
    return torch.stack(crops)


def kmeans_select_representatives(x: torch.Tensor, k: int, iters: int) -> torch.Tensor:
    """Indices (k',) of the samples nearest to each K-means centre (medoid-like; may repeat)."""
    n = x.shape[0]
    k = max(1, min(k, n))
    if n <= k:
        return torch.arange(n, device=x.device)
    data = x.detach().float()
    init = torch.round(torch.linspace(0, n - 1, k)).long().to(x.device)
    centres = data[init].clone()
    for _ in range(iters):
        assign = torch.cdist(data, centres).argmin(dim=1)  # argmin breaks ties to the lowest index
        new = centres.clone()
        for c in range(k):
            members = assign == c
            if members.any():
                new[c] = data[members].mean(dim=0)
        converged = torch.allclose(new, centres, atol=1e-4, rtol=1e-4)
        centres = new
        if converged:
            break
    return torch.cdist(centres, data).argmin(dim=1)
