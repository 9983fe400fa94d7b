"""The multimodal input builder: token ids with placeholders -> LLM input embeddings, labels and token masks.

Released ``prepare_inputs_labels_for_multimodal`` rules (docs/design.md §4.3):

- the ``IMAGE_TOKEN_INDEX`` placeholder is replaced by the sample's visual tokens (label ``IGNORE_INDEX``);
- with P ``<tsf>`` placeholders and B TSF vectors, the first ``min(tsf_k, B, P)`` placeholders become the vectors in
  order and the rest are dropped; with placeholders but no TSF images the first ``min(tsf_k, P)`` become zero
  vectors; inserted positions are ignored by the loss and never count as ``[SEG]``/``[BOX]`` positions;
- ``[SEG]``/``[BOX]`` masks are computed on the ids before expansion and carried through it. Released (LISA)
  convention, the default: the marked position is the one *preceding* the token (``input_ids[:, 1:] == seg`` padded
  with a False at the end), i.e. the hidden state that predicts ``[SEG]``; ``seg_hidden_at="token"`` marks the token
  itself;
- sequences are right-padded with zeros, label ``IGNORE_INDEX``, attention 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sparrow.model.tokens import IGNORE_INDEX, IMAGE_TOKEN_INDEX, TSF_TOKEN_INDEX


@dataclass
class MultimodalInputs:
    embeds: torch.Tensor  # (B, L, D)
    attention_mask: torch.Tensor  # (B, L) long
    labels: torch.Tensor  # (B, L)
    seg_mask: torch.Tensor  # (B, L) bool
    box_mask: torch.Tensor  # (B, L) bool


def token_marks(ids: torch.Tensor, token: int, at: str) -> torch.Tensor:
    if at == "token":
        return ids == token
    marks = torch.zeros_like(ids, dtype=torch.bool)
    marks[:-1] = ids[1:] == token
    return marks


def expand_sample(
    ids: torch.Tensor,
    labels: torch.Tensor | None,
    visual: torch.Tensor,
    tsf: torch.Tensor | None,
    embed_fn,
    seg_id: int,
    box_id: int,
    tsf_k: int,
    seg_hidden_at: str,
):
    """One sample: (embeds (L', D), labels (L',), seg marks (L',), box marks (L',))."""
    seg = token_marks(ids, seg_id, seg_hidden_at)
    box = token_marks(ids, box_id, seg_hidden_at)
    text_embeds = embed_fn(ids.clamp(min=0))
    labels = torch.full_like(ids, IGNORE_INDEX) if labels is None else labels
    tsf_positions = (ids == TSF_TOKEN_INDEX).nonzero(as_tuple=False).squeeze(1).tolist()
    p = len(tsf_positions)
    if p and tsf is not None and tsf.shape[0] > 0:
        n_tsf = min(tsf_k, tsf.shape[0], p)
        tsf_rows = tsf[:n_tsf].to(text_embeds.dtype)
    else:
        n_tsf = min(tsf_k, p)
        tsf_rows = text_embeds.new_zeros(n_tsf, text_embeds.shape[-1])
    tsf_slot = {pos: i for i, pos in enumerate(tsf_positions)}

    pieces, label_pieces, seg_pieces, box_pieces = [], [], [], []
    start = 0
    length = ids.shape[0]
    special = ((ids == IMAGE_TOKEN_INDEX) | (ids == TSF_TOKEN_INDEX)).nonzero(as_tuple=False).squeeze(1).tolist()
    for pos in special + [length]:
        if pos > start:
            pieces.append(text_embeds[start:pos])
            label_pieces.append(labels[start:pos])
            seg_pieces.append(seg[start:pos])
            box_pieces.append(box[start:pos])
        if pos == length:
            break
        if int(ids[pos]) == IMAGE_TOKEN_INDEX:
            rows = visual.to(text_embeds.dtype)
        else:
            slot = tsf_slot[pos]
            rows = tsf_rows[slot : slot + 1] if slot < n_tsf else text_embeds[:0]
        if rows.shape[0]:
            pieces.append(rows)
            label_pieces.append(torch.full((rows.shape[0],), IGNORE_INDEX, dtype=labels.dtype, device=ids.device))
            seg_pieces.append(torch.zeros(rows.shape[0], dtype=torch.bool, device=ids.device))
            box_pieces.append(torch.zeros(rows.shape[0], dtype=torch.bool, device=ids.device))
        start = pos + 1
    return torch.cat(pieces), torch.cat(label_pieces), torch.cat(seg_pieces), torch.cat(box_pieces)


def build_multimodal_inputs(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    labels: torch.Tensor | None,
    visual: list[torch.Tensor],
    tsf: list[torch.Tensor | None],
    embed_fn,
    seg_id: int,
    box_id: int,
    tsf_k: int,
    seg_hidden_at: str = "preceding",
) -> MultimodalInputs:
    """Batch version of :func:`expand_sample` over right-padded ``input_ids`` (padding removed via the mask)."""
    rows = []
    for i in range(input_ids.shape[0]):
        n = int(attention_mask[i].sum())
        ids = input_ids[i, :n]
        lab = labels[i, :n] if labels is not None else None
        rows.append(expand_sample(ids, lab, visual[i], tsf[i], embed_fn, seg_id, box_id, tsf_k, seg_hidden_at))
    length = max(r[0].shape[0] for r in rows)
    dim = rows[0][0].shape[-1]
    b = len(rows)
    ref = rows[0][0]
    embeds = ref.new_zeros(b, length, dim)
    att = torch.zeros(b, length, dtype=torch.long, device=ref.device)
    lab = torch.full((b, length), IGNORE_INDEX, dtype=torch.long, device=ref.device)
    seg = torch.zeros(b, length, dtype=torch.bool, device=ref.device)
    box = torch.zeros(b, length, dtype=torch.bool, device=ref.device)
    for i, (e, labels, s, bx) in enumerate(rows):
        n = e.shape[0]
        embeds[i, :n] = e
        att[i, :n] = 1
        lab[i, :n] = labels
        seg[i, :n] = s
        box[i, :n] = bx
    return MultimodalInputs(embeds, att, lab, seg, box)
