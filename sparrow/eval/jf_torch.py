"""The batched torch path of J and F: the same integer counts as :mod:`sparrow.eval.jf`, with tensor ops.

It runs on whatever device it is given (a GPU when there is one) and processes frames in chunks. Boundaries are
the official 2×2-block rule with replicated last row/column; the disk dilation is the maximum over the rectangles
whose union is the ``skimage`` disk (``max_pool2d`` on a zero-padded map, so that pixels outside the image
contribute nothing). Only integer counts leave the device; the float64 endings are those of the CPU path, so the
values are identical.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sparrow.eval.jf import _disk, binary_mask, bound_radius, to_numpy

# Pixels per chunk of frames (float16 maps on GPU, float32 on CPU; a few maps alive at once).
_CHUNK_PIXELS = 1 << 25


def _as_bool(x: Any, name: str, device):
    import torch

    if isinstance(x, torch.Tensor):
        t = x.to(device)
        if t.dtype == torch.bool:
            return t
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise ValueError(f"{name}: non-finite values")
        nonzero = t != 0
        if nonzero.any():
            first = t[nonzero][0]
            if (t[nonzero] != first).any():
                raise ValueError(f"{name}: not a binary mask (more than one non-zero value)")
        return nonzero
    return torch.from_numpy(binary_mask(to_numpy(x, name), name).view(bool)).to(device)


def _boundary(m):
    """Official boundary map of (N, H, W) bool masks: the 2×2 block below-right is not constant (replicated edges)."""
    import torch

    east = torch.cat([m[:, :, 1:], m[:, :, -1:]], dim=2)
    south = torch.cat([m[:, 1:], m[:, -1:]], dim=1)
    south_east = torch.cat([south[:, :, 1:], south[:, :, -1:]], dim=2)
    return (m ^ east) | (m ^ south) | (m ^ south_east)


def _dilate(b, rects: np.ndarray, reach: int, dtype):
    import torch
    import torch.nn.functional as F

    n, h, w = b.shape
    x = F.pad(b.to(dtype).unsqueeze(1), (reach, reach, reach, reach))
    out = torch.zeros_like(b)
    for dy0, dy1, dx0, dx1 in rects.tolist():
        pooled = F.max_pool2d(x, (dy1 - dy0 + 1, dx1 - dx0 + 1), stride=1)
        out |= pooled[:, 0, dy0 + reach : dy0 + reach + h, dx0 + reach : dx0 + reach + w] > 0
    return out


def jf_counts_torch(gt: Any, pred: Any, void: Any | None, bound_th: float, device) -> tuple[np.ndarray, ...]:
    """(inter, union, n_fg, n_gt, m_fg, m_gt) per frame, as int64 numpy arrays (see :func:`sparrow.eval.jf._counts`)."""
    import torch

    device = torch.device(device)
    g = _as_bool(gt, "gt", device)
    p = _as_bool(pred, "pred", device)
    if g.shape != p.shape:
        raise ValueError(f"shape mismatch: gt {tuple(g.shape)} vs pred {tuple(p.shape)}")
    if g.dim() not in (2, 3):
        raise ValueError(f"masks must be (H, W) or (T, H, W), got shape {tuple(g.shape)}")
    if 0 in g.shape:
        raise ValueError(f"empty sequence or frame: shape {tuple(g.shape)}")
    v = None
    if void is not None:
        v = (
            (void.to(device) != 0)
            if isinstance(void, torch.Tensor)
            else torch.from_numpy(np.ascontiguousarray(to_numpy(void, "void") != 0)).to(device)
        )
        if v.shape != g.shape:
            raise ValueError(f"shape mismatch: void {tuple(v.shape)} vs masks {tuple(g.shape)}")
    if g.dim() == 2:
        g, p = g[None], p[None]
        v = None if v is None else v[None]
    frames, height, width = g.shape
    disk = _disk(bound_radius(height, width, bound_th))
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    step = max(1, _CHUNK_PIXELS // ((height + 2 * disk.reach) * (width + 2 * disk.reach)))
    counts = [[] for _ in range(6)]
    with torch.no_grad():
        for a in range(0, frames, step):
            gc, pc = g[a : a + step], p[a : a + step]
            if v is not None:
                gc, pc = gc & ~v[a : a + step], pc & ~v[a : a + step]
            bg, bp = _boundary(gc), _boundary(pc)
            dg = _dilate(bg, disk.rects, disk.reach, dtype)
            dp = _dilate(bp, disk.rects, disk.reach, dtype)
            for i, x in enumerate((gc & pc, gc | pc, bp, bg, bp & dg, bg & dp)):
                counts[i].append(x.sum(dim=(1, 2), dtype=torch.int64).cpu())
    return tuple(torch.cat(c).numpy().astype(np.int64) for c in counts)
