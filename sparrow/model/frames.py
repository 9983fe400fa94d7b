"""Frame sampling and resizing for the encoders and SAM2.

Sampling (released code and hosts):

- encoder frames: ``linspace(0, T - 1, n)`` (int) when the video has at least n frames; a shorter video is padded to n
  by repeating its last frame (``chat.py::preprocess_vision``);
- SAM2 frames in training: ``num_frames_for_sam`` frames; the kit spreads them with the same linspace rule;
- GLUS: ``n`` global context frames, one per uniform segment (GLUS draws a random frame per segment; the kit takes the
  segment centre so that a dataset item is deterministic), and a question window of consecutive frames whose start is
  a stable hash of the item key.

Resizing: CLIP frames follow ``CLIPImageProcessor`` (shortest edge to S, bicubic, then centre crop S x S); Qwen2.5-VL
and SAM2 frames are stretched to S x S in one float resize (the released code takes ``ResizeLongestSide`` on uint8
pixels, then a bilinear stretch, no padding: about one grey level away; ``sparrow.model.release_frames`` reproduces it
exactly). VideoMAE frames follow the CLIP rule at their own size; InternVideo2 frames are stretched (the released
``cv2.resize`` to 224 x 224).
"""

from __future__ import annotations

import zlib

import numpy as np
import torch
import torch.nn.functional as F

from sparrow.data.indices import linspace_truncated_padded
from sparrow.tsf.crops import clip_preprocess


def segment_centres(num_available: int, n: int) -> list[int]:
    if num_available < n:
        return linspace_truncated_padded(num_available, n)
    edges = np.linspace(0, num_available, n + 1)
    return [int(min(num_available - 1, (a + b) // 2)) for a, b in zip(edges[:-1], edges[1:])]


def window_indices(num_available: int, n: int, key: str) -> list[int]:
    if num_available <= n:
        return linspace_truncated_padded(num_available, n)
    start = zlib.crc32(key.encode("utf-8")) % (num_available - n + 1)
    return list(range(start, start + n))


def sample_training_frames(
    num_available: int, num_frames: int, num_sam_frames: int, host: str, key: str
) -> tuple[list[int], list[int]]:
    """(encoder frame indices, SAM frame indices) of one training item."""
    if host == "glus":
        return segment_centres(num_available, num_frames), window_indices(num_available, num_sam_frames, key)
    return linspace_truncated_padded(num_available, num_frames), linspace_truncated_padded(
        num_available, num_sam_frames
    )


def to_float(frames: np.ndarray) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (T, 3, H, W) float in [0, 1]."""
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be (T, H, W, 3), got shape {frames.shape}")
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div_(255.0)


def stretch(frames: torch.Tensor, size: int) -> torch.Tensor:
    if frames.shape[-2:] == (size, size):
        return frames
    return F.interpolate(frames, size=(size, size), mode="bilinear", align_corners=False)


def encoder_frames(frames: torch.Tensor, size: int, kind: str) -> torch.Tensor:
    """Resize for a spatial/temporal encoder: CLIP-style crop (``kind="clip"``), else a stretch (Qwen2.5-VL,
    InternVideo2)."""
    return clip_preprocess(frames, size) if kind == "clip" else stretch(frames, size)
