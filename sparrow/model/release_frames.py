"""The released VideoGLaMM/SPARROW frame chains (``chat.py::preprocess_vision``), for ``ModelConfig.frame_chain``
``"released"`` (the VideoGLaMM paper preset, and so every converted SPARROW/VideoGLaMM checkpoint).

Each chain resizes the uint8 frames as the released code does, rounding to uint8 where it does, and returns floats in
[0, 1]; the encoders normalise them with the released means and standard deviations (an affine map, which commutes
with the bilinear stretch of the SAM2 chain up to float rounding):

- SAM2: ``ResizeLongestSide(1024)`` (torchvision's PIL path: bilinear, uint8), then a bilinear stretch (torch,
  ``align_corners=False``) to ``size`` x ``size`` (``util/sam_transforms.py``);
- CLIP: ``CLIPImageProcessor`` of ``openai/clip-vit-large-patch14-336``: PIL bicubic resize of the shortest edge to
  ``size`` (the long edge ``int(size * long / short)``), a centre crop (offsets floored), rescale;
- InternVideo2: ``cv2.resize`` (bilinear, uint8) to ``size`` x ``size`` (``VideoTrainProcessor.frames2tensor``).

The kit's own chain (``frame_chain="kit"``, :mod:`sparrow.model.frames`) resizes the float frames in one step; the two
differ by about one grey level (docs/released-weights.md §5).
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from sparrow.model.frames import stretch


def _check(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    return frames


def _to_tensor(images: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div_(255.0)


def longest_side_shape(h: int, w: int, size: int) -> tuple[int, int]:
    """``ResizeLongestSide.get_preprocess_shape``: the longest side to ``size``, rounded half up."""
    scale = size / max(h, w)
    return int(h * scale + 0.5), int(w * scale + 0.5)


def sam_frames(frames: np.ndarray, size: int) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (T, 3, size, size) in [0, 1]: the released SAM2 chain before normalisation."""
    frames = _check(frames)
    h, w = longest_side_shape(frames.shape[1], frames.shape[2], size)
    resized = [np.asarray(Image.fromarray(f).resize((w, h), Image.BILINEAR)) for f in frames]
    return stretch(_to_tensor(resized), size)


def clip_frames(frames: np.ndarray, size: int) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (T, 3, size, size) in [0, 1]: ``CLIPImageProcessor`` before normalisation."""
    frames = _check(frames)
    h, w = frames.shape[1:3]
    short, long = (w, h) if w <= h else (h, w)
    new_long = int(size * long / short)
    new_h, new_w = (new_long, size) if w <= h else (size, new_long)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    out = []
    for f in frames:
        resized = np.asarray(Image.fromarray(f).resize((new_w, new_h), Image.BICUBIC))
        out.append(resized[top : top + size, left : left + size])
    return _to_tensor(out)


def internvideo2_frames(frames: np.ndarray, size: int) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (T, 3, size, size) in [0, 1]: ``cv2.resize`` before normalisation."""
    import cv2

    frames = _check(frames)
    return _to_tensor([cv2.resize(f, (size, size)) for f in frames])


def encoder_frames(frames: np.ndarray, size: int, kind: str) -> torch.Tensor:
    """The released chain of an encoder: CLIP's (``kind="clip"``) or InternVideo2's (``"stretch"``)."""
    return clip_frames(frames, size) if kind == "clip" else internvideo2_frames(frames, size)


__all__ = ["clip_frames", "encoder_frames", "internvideo2_frames", "longest_side_shape", "sam_frames"]
