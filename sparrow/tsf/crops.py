"""Target crops: the frames TSF samples and the crops it cuts from them, in both variants of docs/design.md §4.

- **Tracked-box crops** (the paper pipeline; crop rules of the released ``--tsf_boxes_txt`` path, §4.4): the
  sampled frames are ``linspace(0, T - 1, 16, dtype=int)`` (every frame when ``T <= 16``); a box is cut from the
  raw frame with ``floor`` of x0, y0 and ``ceil`` of x1, y1, clamped so that the crop keeps at least one pixel;
  an empty crop falls back to the whole frame; the crop then goes through the encoder's CLIP-style
  preprocessing (shortest edge to S, centre crop S x S). A sampled frame without a box (lost track) reuses the
  previous sampled frame's box, and the whole frame when there is none yet (the released rule of §4.2 step 5).
- **Ground-truth-mask crops** (what the released training code actually does, §4.2 (b)): boxes come from the
  first referent with a positive mask on the temporally aligned mask frame, normalised by the mask size, applied
  to the CLIP-preprocessed S x S frame (without compensating the centre crop, as released), then the crop is
  resized back to S x S bilinearly.

Crops are float tensors in [0, 1], shape (n, 3, S, S); the encoder applies its own normalisation, which commutes
with cropping and resizing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from sparrow.data.boxes import mask_box
from sparrow.data.indices import linspace_truncated

Box = Sequence[float]


def sample_frame_indices(num_frames: int, count: int = 16) -> list[int]:
    """``linspace(0, T - 1, count, dtype=int)`` when ``T > count``, else every frame (the encoder's sampling)."""
    return linspace_truncated(num_frames, count)


def pixel_box(box: Box, width: int, height: int) -> tuple[int, int, int, int]:
    """Integer crop window of a float xyxy box: floor/ceil, clamped so that it keeps at least one pixel."""
    x0 = max(0, min(width - 1, int(math.floor(box[0]))))
    y0 = max(0, min(height - 1, int(math.floor(box[1]))))
    x1 = max(x0 + 1, min(width, int(math.ceil(box[2]))))
    y1 = max(y0 + 1, min(height, int(math.ceil(box[3]))))
    return x0, y0, x1, y1


def fill_missing_boxes(boxes: Sequence[Box | None], width: int, height: int) -> tuple[list[tuple[float, ...]], int]:
    """Replace each missing box by the previous one, or the whole frame before the first; returns (boxes, filled)."""
    out: list[tuple[float, ...]] = []
    previous: tuple[float, ...] | None = None
    filled = 0
    for box in boxes:
        if box is None:
            filled += 1
            box = previous if previous is not None else (0.0, 0.0, float(width), float(height))
        previous = tuple(float(v) for v in box)
        out.append(previous)
    return out, filled


def to_float_image(frame: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float32 in [0, 1]."""
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB frame, got shape {frame.shape}")
    return torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1).float().div_(255.0)


def clip_preprocess(image: torch.Tensor, size: int) -> torch.Tensor:
    """CLIP-style geometry on a (3, h, w) image: shortest edge to ``size`` (bicubic), then a centre crop."""
    _, h, w = image.shape
    scale = size / min(h, w)
    new_h, new_w = max(size, round(h * scale)), max(size, round(w * scale))
    resized = F.interpolate(image[None], size=(new_h, new_w), mode="bicubic", align_corners=False,
                            antialias=True)[0].clamp_(0.0, 1.0)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return resized[:, top:top + size, left:left + size]


def crops_at_boxes(frames: np.ndarray, indices: Sequence[int], boxes: Sequence[Box], size: int) -> torch.Tensor:
    """Cut ``boxes[j]`` out of ``frames[indices[j]]`` (raw pixels) and CLIP-preprocess each crop to ``size``."""
    if len(indices) != len(boxes):
        raise ValueError(f"{len(indices)} frame indices but {len(boxes)} boxes")
    out = torch.empty((len(indices), 3, size, size), dtype=torch.float32)
    for j, (index, box) in enumerate(zip(indices, boxes)):
        frame = frames[index]
        height, width = frame.shape[:2]
        x0, y0, x1, y1 = pixel_box(box, width, height)
        crop = frame[y0:y1, x0:x1]
        if crop.size == 0:
            crop = frame
        out[j] = clip_preprocess(to_float_image(crop), size)
    return out


def aligned_mask_frame(source_index: int, num_source: int, num_mask_frames: int) -> int:
    """The mask frame aligned with context frame ``s``: ``round(s / (n_src - 1) * (T_sam - 1))``, clamped."""
    if num_source <= 1 or num_mask_frames <= 1:
        return 0
    m = int(round(source_index / (num_source - 1) * (num_mask_frames - 1)))
    return max(0, min(num_mask_frames - 1, m))


def normalised_mask_box(mask: np.ndarray) -> tuple[float, float, float, float] | None:
    """Tight box of a mask's positive pixels, exclusive max, divided by the mask's own width and height."""
    return mask_box(mask, normalised=True)


def ground_truth_mask_crops(frames: np.ndarray, referent_masks: Sequence[np.ndarray], size: int,
                            num_frames: int = 16, num_mask_frames: int = 8) -> tuple[torch.Tensor, list[int], list[tuple[float, ...]]]:
    """The released training-time crops (docs/design.md §4.2 (b)) for one expression.

    ``frames`` is the (T, H, W, 3) clip, ``referent_masks`` the (T, H, W) masks of the expression's objects in
    their listed order. Context frames are ``linspace(0, T - 1, min(num_frames, T))``; the mask frames are
    ``num_mask_frames`` uniformly spaced frames of the same clip (the training loaders' 8 SAM frames; uniform
    spacing is our reading). Returns (crops (n, 3, S, S), context frame indices, normalised boxes used).
    """
    total = frames.shape[0]
    n = min(num_frames, total)
    if n == 0:
        return torch.zeros((0, 3, size, size)), [], []
    source = linspace_truncated(total, n)
    t_sam = min(num_mask_frames, total)
    mask_frames = linspace_truncated(total, t_sam)
    crops = torch.empty((n, 3, size, size), dtype=torch.float32)
    used: list[tuple[float, ...]] = []
    previous: tuple[float, ...] | None = None
    for j, s in enumerate(source):
        frame_index = mask_frames[aligned_mask_frame(j, n, t_sam)]
        box = None
        for masks in referent_masks:
            box = normalised_mask_box(masks[frame_index])
            if box is not None:
                break
        if box is None:
            box = previous if previous is not None else (0.0, 0.0, 1.0, 1.0)
        previous = box
        used.append(box)
        image = clip_preprocess(to_float_image(frames[s]), size)
        x0, y0, x1, y1 = pixel_box((box[0] * size, box[1] * size, box[2] * size, box[3] * size), size, size)
        crop = image[:, y0:y1, x0:x1]
        if crop.numel() == 0:
            crop = image
        crops[j] = F.interpolate(crop[None], size=(size, size), mode="bilinear", align_corners=False)[0]
    return crops, source, used
