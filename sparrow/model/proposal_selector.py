"""ProposalSelector and box selection (docs/design.md §6, §7), with the optional box-regression head.

Dimensions: ``seg_dim`` = the SAM2 prompt dimension (256), ``prop_dim`` = the proposer's d_model (256),
``hidden`` = ``min(seg_dim, prop_dim)`` unless set.

Forward for queries E (N_q x seg_dim), proposal features P (N_p x prop_dim), scores s, validity v:

1. ``logits = seg_proj(E) . prop_proj(P)^T / sqrt(hidden) + log(clamp(s, 1e-6))``; invalid proposals -> -inf;
2. ``attention = softmax(logits)`` (NaN -> 0); ``refined = E + fuse_proj(attention . P)``;
3. box-regression head ``box_head([seg_proj(E); prop_proj(P)])`` for every pair -> sigmoid -> coordinates sorted so
   that x1 <= x2, y1 <= y2. Its last layer is zero-initialised. Used only for a training loss when
   ``SelectorSpec.box_regression`` is on (released default off); its boxes never prompt SAM2. A property of the
   released design, kept: with the zero-initialised last layer the raw x1 and x2 (y1 and y2) start equal, and
   ``torch.minimum``/``maximum`` split tie gradients evenly, so both get the same gradient and stay equal; the head
   can move a box but never give it a width or height.

Which query: the sample's ``[BOX]`` embeddings, or its ``[SEG]`` embeddings when no ``[BOX]`` was emitted. The refined
output replaces the query: with ``[BOX]`` present it replaces the ``[BOX]`` embeddings (not used for masks, so
``fuse_proj`` has no effect on masks); without ``[BOX]`` it replaces the ``[SEG]`` embeddings, which then drive the
masks. (Paper vs code: this is the released behaviour; the kit has no other variant.)

Box selection per query (``select_boxes``): ``p = sigmoid(final logits) x validity``; keep ``p >= 0.4``, else the
argmax; cap at ``max_selected_per_token`` by highest ``p`` (model default 16). ``align_to_tokens`` repeats the last
list when there are fewer lists than ``[SEG]`` tokens.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class ProposalSelector(nn.Module):
    def __init__(self, seg_dim: int, prop_dim: int, hidden_dim: int | None = None):
        super().__init__()
        hidden = hidden_dim if hidden_dim is not None else min(seg_dim, prop_dim)
        self.hidden_dim = hidden
        self.seg_proj = nn.Linear(seg_dim, hidden)
        self.prop_proj = nn.Linear(prop_dim, hidden)
        self.fuse_proj = nn.Linear(prop_dim, seg_dim)
        self.box_head = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 4))
        nn.init.zeros_(self.box_head[-1].weight)
        nn.init.zeros_(self.box_head[-1].bias)

    def forward(
        self,
        queries: torch.Tensor,
        features: torch.Tensor,
        scores: torch.Tensor | None = None,
        valid: torch.Tensor | None = None,
    ):
        """(refined queries (N_q, seg_dim), logits (N_q, N_p), attention (N_q, N_p), pair boxes (N_q, N_p, 4))."""
        nq, np_ = queries.shape[0], features.shape[0]
        if nq == 0 or np_ == 0:
            empty = queries.new_zeros(nq, np_)
            return queries, empty, empty, queries.new_zeros(nq, np_, 4)
        features = features.to(queries.dtype)
        q = self.seg_proj(queries)
        k = self.prop_proj(features)
        logits = q @ k.t() / math.sqrt(self.hidden_dim)
        if scores is not None:
            logits = logits + torch.log(scores.to(logits.dtype).clamp(min=1e-6)).unsqueeze(0)
        if valid is not None:
            logits = logits.masked_fill(~valid.bool().unsqueeze(0), float("-inf"))
        attention = torch.nan_to_num(torch.softmax(logits, dim=-1), nan=0.0)
        refined = queries + self.fuse_proj(attention @ features)
        pairs = torch.cat([q.unsqueeze(1).expand(-1, np_, -1), k.unsqueeze(0).expand(nq, -1, -1)], dim=-1)
        raw = self.box_head(pairs).sigmoid()
        boxes = torch.cat([torch.minimum(raw[..., :2], raw[..., 2:]), torch.maximum(raw[..., :2], raw[..., 2:])], -1)
        return refined, logits, attention, boxes


def select_boxes(
    logits: torch.Tensor, boxes: torch.Tensor, valid: torch.Tensor | None, threshold: float, max_per_token: int
) -> list[torch.Tensor]:
    """Per query row: proposals with ``sigmoid(logit) >= threshold`` (else the best valid one), capped by score."""
    nq, np_ = logits.shape
    if np_ == 0:
        return [boxes.new_zeros(0, 4) for _ in range(nq)]
    valid = torch.ones(np_, dtype=torch.bool, device=logits.device) if valid is None else valid.bool()
    probs = torch.sigmoid(logits.float()) * valid.float().unsqueeze(0)
    out = []
    for i in range(nq):
        keep = (probs[i] >= threshold) & valid
        if not keep.any():
            candidates = probs[i].masked_fill(~valid, -1.0)
            keep = torch.zeros_like(keep)
            keep[int(candidates.argmax()) if valid.any() else 0] = True
        idx = keep.nonzero(as_tuple=False).squeeze(1)
        if max_per_token > 0 and idx.numel() > max_per_token:
            idx = idx[probs[i, idx].topk(max_per_token).indices]
        out.append(boxes[idx])
    return out


def align_to_tokens(box_lists: list[torch.Tensor], count: int) -> list[torch.Tensor]:
    """List ``i`` for token ``i``, repeating the last list when there are fewer lists than tokens."""
    if count == 0 or not box_lists:
        return [] if count == 0 else [torch.zeros(0, 4) for _ in range(count)]
    return [box_lists[min(i, len(box_lists) - 1)] for i in range(count)]
