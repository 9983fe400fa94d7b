"""Target crops: the frames TSF samples and the crops it cuts from them, in both variants of docs/design.md §4.

This module is the one implementation of the crop rules: the offline pass (:mod:`sparrow.tsf.pipeline`, what
notebook 02 draws), the model's collator (training crops) and ``SparrowModel.predict`` (TSF at test) all call it.
It imports only numpy and torch, so the model can use it without importing the rest of :mod:`sparrow.tsf`.

- **Tracked-box crops** (:func:`tracked_box_crops`; the paper pipeline, crop rules of the released
  ``--tsf_boxes_txt`` inference path, §4.4): ``TSF_FRAMES = 16`` sampled frames ``linspace(0, T - 1, 16,
  dtype=int)`` (every frame when ``T <= 16``), the released ``NUM_FRAMES`` that the released encoder also
  samples, kept at 16 inside the model too whatever its host's encoder samples (8 frames for VideoGLaMM mini), so
  that the model crops what the offline pass cropped; frame ``i`` uses box row ``min(i, L - 1)``; a box is cut
  from the **raw** frame with ``floor`` of x0, y0 and ``ceil`` of x1, y1, clamped so that the crop keeps at least
  one pixel (so the released whole-frame fallback for an empty crop never triggers); the crop then gets the CLIP
  encoder's preprocessing, shortest edge to S (bicubic) and a centre crop S x S (:func:`clip_preprocess`), not a
  stretch: the released code hands the raw crop to ``CLIPImageProcessor``, and the kit's CLIP encoders
  preprocess their frames the same way. UniPixel's Qwen2.5-VL tower has no released TSF path; it gets the same
  square crops. A sampled frame without a box (lost track, a NaN row) reuses the previous sampled frame's box,
  and the whole frame when there is none yet (the released rule of §4.2 step 5).
- **Ground-truth-mask crops** (:func:`mask_box_crops`; what the released training code does, §4.2 (b)): the
  source frames are the encoder's S x S frames; ``n = min(16, num_src)`` crops at source indices
  ``linspace(0, num_src - 1, n)``; the aligned mask frame is ``round(s / (num_src - 1) * (T_sam - 1))``; the box
  is the tight box (exclusive max, normalised by the mask's own size) of the first target with a positive pixel
  there (the previous box, or the whole frame, when none has); it is cut from the S x S frame without
  compensating the encoder's centre crop, as released, and resized back to S x S with a bilinear stretch
  (``align_corners=False``). The released code crops the normalised tensor; cropping the [0, 1] frame is the same
  because the normalisation is per-channel affine and commutes with cropping and bilinear resizing.

Crops are float tensors in [0, 1], shape (n, 3, S, S), on the frames' device.
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

#: frames sampled per clip for TSF crops (the released ``NUM_FRAMES``)
TSF_FRAMES = 16
#: aligned mask frames of the ground-truth-mask variant (the released training loaders' SAM frames)
TSF_MASK_FRAMES = 8


def sample_frame_indices(num_frames: int, count: int = TSF_FRAMES) -> list[int]:
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


def to_float_image(frames: np.ndarray) -> torch.Tensor:
    """(..., H, W, 3) uint8 -> (..., 3, H, W) float32 in [0, 1]."""
    if frames.ndim < 3 or frames.shape[-1] != 3:
        raise ValueError(f"expected (H, W, 3) RGB frames, got shape {frames.shape}")
    return torch.from_numpy(np.ascontiguousarray(frames)).movedim(-1, -3).float().div_(255.0)


def clip_preprocess(images: torch.Tensor, size: int) -> torch.Tensor:
    """CLIP-style geometry on (..., 3, h, w) images: shortest edge to ``size`` (bicubic), then a centre crop; images
    already ``size`` x ``size`` are returned as they are."""
    h, w = images.shape[-2:]
    if (h, w) == (size, size):
        return images
    scale = size / min(h, w)
    new_h, new_w = max(size, round(h * scale)), max(size, round(w * scale))
    flat = images.reshape(-1, *images.shape[-3:])
    resized = F.interpolate(flat, size=(new_h, new_w), mode="bicubic", align_corners=False, antialias=True).clamp_(
        0.0, 1.0
    )
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return resized[..., top : top + size, left : left + size].reshape(*images.shape[:-2], size, size)


def _geometry(frames: np.ndarray | torch.Tensor) -> tuple[int, int, int]:
    """(T, H, W) of (T, H, W, 3) uint8 frames or a (T, 3, H, W) float video."""
    if isinstance(frames, torch.Tensor):
        if frames.ndim != 4 or frames.shape[1] != 3:
            raise ValueError(f"expected a (T, 3, H, W) video tensor, got shape {tuple(frames.shape)}")
        return int(frames.shape[0]), int(frames.shape[2]), int(frames.shape[3])
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected (T, H, W, 3) frames, got shape {frames.shape}")
    return int(frames.shape[0]), int(frames.shape[1]), int(frames.shape[2])


def crops_at_boxes(
    frames: np.ndarray | torch.Tensor, indices: Sequence[int], boxes: Sequence[Box], size: int
) -> torch.Tensor:
    """Cut ``boxes[j]`` out of frame ``indices[j]`` and CLIP-preprocess each crop to ``size``.

    ``frames`` are (T, H, W, 3) uint8 or a (T, 3, H, W) float video in [0, 1]: a uint8 crop divided by 255 equals
    the same crop of the float video, so both give the same tensors."""
    if len(indices) != len(boxes):
        raise ValueError(f"{len(indices)} frame indices but {len(boxes)} boxes")
    _, height, width = _geometry(frames)
    out = []
    for index, box in zip(indices, boxes):
        x0, y0, x1, y1 = pixel_box(box, width, height)
        if isinstance(frames, torch.Tensor):
            crop = frames[index, :, y0:y1, x0:x1]
        else:
            crop = to_float_image(frames[index, y0:y1, x0:x1])
        out.append(clip_preprocess(crop, size))
    if not out:
        device = frames.device if isinstance(frames, torch.Tensor) else None
        return torch.zeros((0, 3, size, size), device=device)
    return torch.stack(out)


def tracked_box_crops(
    frames: np.ndarray | torch.Tensor, boxes, size: int, count: int = TSF_FRAMES
) -> tuple[torch.Tensor, list[int], list[tuple[float, ...]]]:
    """The tracked-box crops of one clip (module docstring): (crops (n, 3, S, S), frame indices, boxes used).

    ``frames`` as :func:`crops_at_boxes`; ``boxes`` per-frame pixel xyxy rows (L, 4), a NaN row where the tracker
    lost the target (what :meth:`sparrow.tsf.runs.TSFRun.boxes` returns with ``fill_lost=False``)."""
    rows = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if rows.shape[0] == 0:
        raise ValueError("tracked_box_crops needs at least one box row")
    total, height, width = _geometry(frames)
    indices = sample_frame_indices(total, count)
    picked = [rows[min(i, rows.shape[0] - 1)] for i in indices]
    used, _ = fill_missing_boxes([None if np.isnan(r).any() else r for r in picked], width, height)
    return crops_at_boxes(frames, indices, used, size), indices, used


def aligned_mask_frame(source_index: int, num_source: int, num_mask_frames: int) -> int:
    """The mask frame aligned with context frame ``s``: ``round(s / (n_src - 1) * (T_sam - 1))``, clamped."""
    if num_source <= 1 or num_mask_frames <= 1:
        return 0
    m = int(round(source_index / (num_source - 1) * (num_mask_frames - 1)))
    return max(0, min(num_mask_frames - 1, m))


def normalised_mask_box(mask: np.ndarray | torch.Tensor) -> tuple[float, float, float, float] | None:
    """Tight box of a mask's positive pixels, exclusive max, divided by the mask's own width and height.

    Positive means ``> 0``, so the kit's negative ignore label (-1) never counts as the target; the box is computed
    on the host in float64, as the released code's Python arithmetic."""
    return mask_box(torch.as_tensor(mask).cpu().numpy(), normalised=True, ignore_index=-1)


def _crop_normalised(frame: torch.Tensor, box: Box) -> torch.Tensor:
    """Cut a normalised box out of a (3, S, S) frame and stretch it back to S x S (bilinear)."""
    _, height, width = frame.shape
    x0, y0, x1, y1 = pixel_box((box[0] * width, box[1] * height, box[2] * width, box[3] * height), width, height)
    crop = frame[:, y0:y1, x0:x1]
    return F.interpolate(crop[None], size=(height, width), mode="bilinear", align_corners=False)[0]


def mask_box_crops(
    source_frames: torch.Tensor, target_masks: np.ndarray | torch.Tensor, count: int = TSF_FRAMES
) -> tuple[torch.Tensor, list[int], list[tuple[float, ...]]]:
    """The released training-time crops (module docstring) of one sample.

    ``source_frames`` (num_src, 3, S, S) are the encoder frames in [0, 1], ``target_masks`` (n_targets, T_sam, H, W)
    the targets' masks in their listed order. Returns (crops (n, 3, S, S), source indices, normalised boxes used).
    """
    masks = torch.as_tensor(target_masks)
    num_src = int(source_frames.shape[0])
    targets = masks.shape[0] if masks.ndim == 4 else 0
    t_sam = masks.shape[1] if targets else 0
    n = min(count, num_src)
    if n == 0:
        return source_frames.new_zeros((0, *source_frames.shape[1:])), [], []
    sources = linspace_truncated(num_src, n)
    crops, used = [], []
    previous: tuple[float, ...] | None = None
    for s in sources:
        m = aligned_mask_frame(s, num_src, t_sam)
        box = None
        for target in range(targets if t_sam else 0):
            box = normalised_mask_box(masks[target, m])
            if box is not None:
                break
        if box is None:
            box = previous if previous is not None else (0.0, 0.0, 1.0, 1.0)
        previous = box
        used.append(box)
        crops.append(_crop_normalised(source_frames[s], box))
    return torch.stack(crops), sources, used


def ground_truth_mask_crops(
    frames: np.ndarray,
    referent_masks: Sequence[np.ndarray],
    size: int,
    num_frames: int = TSF_FRAMES,
    num_mask_frames: int = TSF_MASK_FRAMES,
) -> tuple[torch.Tensor, list[int], list[tuple[float, ...]]]:
    """:func:`mask_box_crops` of one expression's raw clip (docs/design.md §4.2 (b)).

    ``frames`` is the (T, H, W, 3) clip, ``referent_masks`` the (T, H, W) masks of the expression's objects in
    their listed order. Context frames are ``linspace(0, T - 1, min(num_frames, T))``, preprocessed as the CLIP
    encoder's; the mask frames are ``num_mask_frames`` uniformly spaced frames of the same clip (the training
    loaders' SAM frames; uniform spacing is our reading). Returns (crops (n, 3, S, S), context frame indices,
    normalised boxes used).
    """
    total, height, width = _geometry(frames)
    n = min(num_frames, total)
    if n == 0:
        return torch.zeros((0, 3, size, size)), [], []
    source = linspace_truncated(total, n)
    mask_frames = linspace_truncated(total, num_mask_frames)
    masks = (
        np.stack([np.asarray(m)[mask_frames] for m in referent_masks])
        if len(referent_masks)
        else np.zeros((0, len(mask_frames), height, width), dtype=bool)
    )
    context = clip_preprocess(to_float_image(frames[source]), size)
    crops, _, used = mask_box_crops(context, masks, n)
    return crops, source, used
