"""The shared L->V projector: LLM hidden states at ``[SEG]``/``[BOX]`` -> SAM2 prompt tokens.

- ``text_hidden_fcs`` (VideoGLaMM, GLUS, SPARROW): Linear(d, d) -> ReLU -> Linear(d, 256) -> Dropout(0.0); one
  256-d token per ``[SEG]``.
- ``seg_head`` (UniPixel): RMSNorm -> Linear(d, d) -> GELU -> Linear(d, 256 x k), k = 2 SAM sparse tokens per
  ``[SEG]``. With ``norm_eps`` the norm is Qwen2's (that eps, computed in float32), as UniPixel's own ``seg_head``;
  without it, torch's RMSNorm with its dtype-dependent default eps (the tiny presets).

Paper vs released code: the paper writes a separate W_b for ``[BOX]``; the released code sends ``[BOX]`` and ``[SEG]``
through the same ``text_hidden_fcs``. The kit follows the code (one shared projector; no switch, since a separate W_b
is not specified anywhere). With ``seg_head`` the k tokens of a ``[BOX]`` are averaged into one selector query
(kit choice; UniPixel has no ``[BOX]``).
"""

from __future__ import annotations

import torch
from torch import nn


def _qwen_rms_norm(dim: int, eps: float) -> nn.Module:
    from transformers.models.qwen2.modeling_qwen2 import Qwen2RMSNorm

    return Qwen2RMSNorm(dim, eps=eps)


class LVProjector(nn.Module):
    """(N, d) hidden states -> (N, k, out_dim) SAM2 tokens."""

    def __init__(self, kind: str, in_dim: int, out_dim: int, tokens_per_target: int = 1, norm_eps: float | None = None):
        super().__init__()
        self.kind = kind
        self.tokens_per_target = tokens_per_target
        self.out_dim = out_dim
        if kind == "text_hidden_fcs":
            if tokens_per_target != 1:
                raise ValueError("text_hidden_fcs gives one token per [SEG]; use seg_head for more")
            self.net = nn.Sequential(
                nn.Linear(in_dim, in_dim), nn.ReLU(inplace=True), nn.Linear(in_dim, out_dim), nn.Dropout(0.0)
            )
        elif kind == "seg_head":
            norm = nn.RMSNorm(in_dim) if norm_eps is None else _qwen_rms_norm(in_dim, norm_eps)
            self.net = nn.Sequential(
                norm, nn.Linear(in_dim, in_dim), nn.GELU(), nn.Linear(in_dim, out_dim * tokens_per_target)
            )
        else:
            raise ValueError(f"unknown L->V projector {kind!r}")

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        out = self.net(hidden)
        return out.reshape(hidden.shape[0], self.tokens_per_target, self.out_dim)

    def query(self, hidden: torch.Tensor) -> torch.Tensor:
        """(N, d) -> (N, out_dim): one selector query per token (mean of its k SAM tokens)."""
        return self.forward(hidden).mean(dim=1)
