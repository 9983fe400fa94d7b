"""V->L adapters: the projector from vision features to the LLM's embedding space, with token pooling.

- ``mlp2x_gelu`` (VideoGLaMM's ``mm_projector`` and ``image_mm_projector``, VideoGPT+
  ``scripts/finetune_dual_encoder.sh``): Linear -> GELU -> Linear.
- ``linear`` (LLaVA v1 / LISA / GLUS ``mm_projector``): one Linear.
- ``none``: identity (UniPixel: Qwen2.5-VL's merger inside the vision tower already projects).

Pooling: VideoGLaMM projects, then adaptive-average-pools the patch grid (context frames 24x24 -> 12x12, video tokens
16x16 -> 8x8, i.e. stride 2); GLUS average-pools the patch sequence 4:1 (256 -> 64 tokens per frame). For TSF crops
the projected tokens are averaged over all patches without pooling (``encode_mean``), as the released ``arch.py``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def build_projector(kind: str, in_dim: int, out_dim: int) -> nn.Module:
    if kind == "mlp2x_gelu":
        return nn.Sequential(nn.Linear(in_dim, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim))
    if kind == "linear":
        return nn.Sequential(nn.Linear(in_dim, out_dim))
    if kind == "none":
        if in_dim != out_dim:
            raise ValueError(f"projector 'none' needs equal dims, got {in_dim} -> {out_dim}")
        return nn.Identity()
    raise ValueError(f"unknown projector {kind!r}; choose mlp2x_gelu, linear or none")


def pool_grid(tokens: torch.Tensor, stride: int) -> torch.Tensor:
    """(N, G*G, D) -> (N, (G//s)^2, D) by adaptive average pooling of the square token grid."""
    if stride <= 1:
        return tokens
    n, count, d = tokens.shape
    side = int(math.isqrt(count))
    if side * side != count:
        raise ValueError(f"{count} tokens do not form a square grid")
    grid = tokens.transpose(1, 2).reshape(n, d, side, side)
    out = max(1, side // stride)
    return F.adaptive_avg_pool2d(grid, (out, out)).flatten(2).transpose(1, 2)


def pool_sequence(tokens: torch.Tensor, kernel: int) -> torch.Tensor:
    """(N, L, D) -> (N, L//k, D) with AvgPool1d(k) over the sequence (GLUS)."""
    if kernel <= 1:
        return tokens
    return F.avg_pool1d(tokens.transpose(1, 2), kernel_size=kernel, stride=kernel).transpose(1, 2)


class VLAdapter(nn.Module):
    """Projector plus the pooling rule of one token stream."""

    def __init__(
        self,
        kind: str,
        in_dim: int,
        out_dim: int,
        grid_stride: int = 1,
        seq_kernel: int = 1,
        pool_before_projection: bool = False,
    ):
        super().__init__()
        self.kind = kind
        self.proj = build_projector(kind, in_dim, out_dim)
        self.grid_stride = grid_stride
        self.seq_kernel = seq_kernel
        self.pool_before_projection = pool_before_projection

    def _pool(self, tokens: torch.Tensor) -> torch.Tensor:
        return pool_sequence(pool_grid(tokens, self.grid_stride), self.seq_kernel)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """(N, L, C) vision tokens -> (N, L', D) LLM tokens."""
        dtype = self._dtype(tokens)
        if self.pool_before_projection:
            return self.proj(self._pool(tokens).to(dtype))
        return self._pool(self.proj(tokens.to(dtype)))

    def encode_mean(self, tokens: torch.Tensor) -> torch.Tensor:
        """(N, L, C) -> (N, D): project every token, then average (TSF crop embedding)."""
        return self.proj(tokens.to(self._dtype(tokens))).mean(dim=1)

    def _dtype(self, tokens: torch.Tensor) -> torch.dtype:
        first = next(self.proj.parameters(), None)
        return first.dtype if first is not None else tokens.dtype
