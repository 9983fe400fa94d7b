"""The tight box of a mask: one rule, with the options that differ between its users.

A box is ``[x0, y0, x1, y1]`` over the positive pixels of an (H, W) mask. The options:

- ``inclusive``: False (default) gives an exclusive max, ``x1 = last column + 1`` (curated records, TSF crops,
  training targets, the box prior filter, predicted frame boxes); True gives the last pixel index itself
  (``torchvision.ops.masks_to_boxes``, which the VidSTG evaluation follows);
- ``normalised``: divide x by W and y by H (TSF ground-truth crops and training targets);
- ``ignore_index``: None (default) takes every non-zero pixel as positive; a value takes only pixels above zero that
  are not that value (training targets, whose ignored pixels are negative and whose resizing may blur them);
- ``union``: a (..., H, W) stack is first reduced to the pixels positive in any of its masks (a target over time).

A numpy (or array-like) mask gives a tuple of Python floats; a torch tensor gives a float32 tensor of shape (4,) on
the mask's device. An empty mask gives None.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

BoxTuple = tuple[float, float, float, float]


def _is_tensor(mask: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(mask, torch.Tensor)


def mask_box(
    mask: Any,
    *,
    inclusive: bool = False,
    normalised: bool = False,
    ignore_index: float | None = None,
    union: bool = False,
) -> Any:
    """Tight box of ``mask``'s positive pixels under the options of the module docstring, or None when empty."""
    tensor = _is_tensor(mask)
    if not tensor:
        mask = np.asarray(mask)
    positive = mask != 0 if ignore_index is None else (mask > 0) & (mask != ignore_index)
    if union and positive.ndim > 2:
        positive = positive.reshape((-1, *positive.shape[-2:])).any(0)
    if positive.ndim != 2:
        raise ValueError(
            f"expected an (H, W) mask{'' if union else ' (union=True for a stack)'}, got shape {tuple(positive.shape)}"
        )
    height, width = positive.shape
    end = 0 if inclusive else 1
    if tensor:
        idx = positive.nonzero(as_tuple=False)
        if idx.numel() == 0:
            return None
        y, x = idx[:, 0].float(), idx[:, 1].float()
        import torch

        if normalised:
            return torch.stack([x.min() / width, y.min() / height, (x.max() + end) / width, (y.max() + end) / height])
        return torch.stack([x.min(), y.min(), x.max() + end, y.max() + end])
    rows = np.flatnonzero(positive.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(positive.any(axis=0))
    box = (float(cols[0]), float(rows[0]), float(cols[-1] + end), float(rows[-1] + end))
    if normalised:
        return (box[0] / width, box[1] / height, box[2] / width, box[3] / height)
    return box


def mask_to_box(mask: np.ndarray) -> list[float] | None:
    """The box of a curated record: exclusive max, in pixels, as a JSON-ready list; None for an empty mask."""
    box = mask_box(mask)
    return None if box is None else list(box)


def frame_boxes(masks: np.ndarray) -> np.ndarray:
    """(T, 4) float32 exclusive-max pixel boxes of (T, H, W) masks, a NaN row for each empty frame."""
    out = np.full((len(masks), 4), np.nan, dtype=np.float32)
    for t, mask in enumerate(masks):
        box = mask_box(mask)
        if box is not None:
            out[t] = box
    return out
