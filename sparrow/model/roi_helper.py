"""ROIProposalHelper (docs/design.md §7): proposal scores from ROI features of SAM2's frame-0 feature pyramid.

1. Normalised proposal boxes x SAM input size -> pixel boxes.
2. ROIAlign ``roi_size`` x ``roi_size`` (``aligned=True``, ``spatial_scale`` = level height / input height) on the
   three SAM2 decoder levels of frame 0 (1/4 res with C/8 channels, 1/8 with C/4, 1/16 with C + ``no_mem_embed``;
   32/64/256 channels for SAM2-L), with torchvision's ROIAlign (default adaptive sampling). Where torchvision's
   compiled ops load (GPU machines) its kernel runs. Under the kit's CPU shim torchvision would ``torch.compile`` its
   pure-Python reference on first use (tens of seconds of C++ compilation) and that reference is slow eagerly, so the
   kit computes the same ROIAlign with ``grid_sample`` (``roi_align_grid_sample``, checked against the reference
   in the tests).
3. Per level: the ROI tokens -> ``level_token_proj`` Linear(C_l -> hidden); the ROI mean -> ``level_pool_proj``.
   Tokens of all levels are concatenated (147 per proposal at 7x7); the proposal's global vector is the mean of the
   pooled vectors. Channels are zero-padded or truncated to C_l when a level's width differs.
4. ``q = query_proj(E)``; per proposal, softmax attention over its tokens with scale 1/sqrt(hidden) gives ``z``.
5. ``roi_logit = score_head([z; global; seg_proj(E)])``, score_head = Linear(3 hidden -> hidden) -> ReLU -> Linear(1).

The model adds ``gamma * roi_logit`` to the selector logits, with gamma a learnable scalar (init 0.1) clamped to
[0, 1] at use.
"""

from __future__ import annotations

import math

import torch
from torch import nn

_CHUNK_BUDGET = 40_000_000  # sampled elements (K x C x points) per grid_sample call of the CPU path


def roi_align_grid_sample(
    feat: torch.Tensor, boxes_px: torch.Tensor, output_size: int, spatial_scale: float
) -> torch.Tensor:
    """torchvision's ROIAlign (aligned=True, adaptive sampling) computed with ``grid_sample``.

    Same sample points (``ceil(roi / output)`` per bin side), same bilinear rule (coordinates in [-1, 0] and
    [size - 1, size] clamp to the border, points beyond contribute 0), same average; a test compares it with
    torchvision's reference implementation.
    """
    import torch.nn.functional as F

    k = boxes_px.shape[0]
    _, c, h, w = feat.shape
    s = output_size
    b = boxes_px.float() * spatial_scale - 0.5
    x1, y1, x2, y2 = b.unbind(1)
    bin_h, bin_w = (y2 - y1) / s, (x2 - x1) / s
    grid_h = torch.ceil((y2 - y1) / s).clamp(min=0).long()
    grid_w = torch.ceil((x2 - x1) / s).clamp(min=0).long()
    gh, gw = max(1, int(grid_h.max())), max(1, int(grid_w.max()))
    p = torch.arange(s, device=feat.device, dtype=torch.float32)
    iy = torch.arange(gh, device=feat.device, dtype=torch.float32)
    ix = torch.arange(gw, device=feat.device, dtype=torch.float32)
    ys = (
        y1[:, None, None]
        + p[None, :, None] * bin_h[:, None, None]
        + (iy[None, None, :] + 0.5) * (bin_h / grid_h.clamp(min=1))[:, None, None]
    ).reshape(k, s * gh)
    xs = (
        x1[:, None, None]
        + p[None, :, None] * bin_w[:, None, None]
        + (ix[None, None, :] + 0.5) * (bin_w / grid_w.clamp(min=1))[:, None, None]
    ).reshape(k, s * gw)
    yy, xx = ys[:, :, None].expand(k, s * gh, s * gw), xs[:, None, :].expand(k, s * gh, s * gw)
    inside = ((yy >= -1) & (yy <= h) & (xx >= -1) & (xx <= w)).to(feat.dtype)
    grid = torch.stack([xx.clamp(0, w - 1) / max(w - 1, 1) * 2 - 1, yy.clamp(0, h - 1) / max(h - 1, 1) * 2 - 1], -1)
    samples = F.grid_sample(feat.expand(k, -1, -1, -1), grid.to(feat.dtype), mode="bilinear", align_corners=True)
    samples = (samples * inside[:, None]).reshape(k, c, s, gh, s, gw)
    used_y = (iy[None, :] < grid_h[:, None]).to(feat.dtype)
    used_x = (ix[None, :] < grid_w[:, None]).to(feat.dtype)
    samples = samples * used_y[:, None, None, :, None, None] * used_x[:, None, None, None, None, :]
    count = (grid_h * grid_w).clamp(min=1).to(feat.dtype)
    return samples.sum(dim=(3, 5)) / count[:, None, None, None]


def roi_align_features(
    feat: torch.Tensor, boxes_px: torch.Tensor, output_size: int, spatial_scale: float
) -> torch.Tensor:
    """ROIAlign (aligned=True, adaptive sampling) of pixel boxes (K, 4) on a (1, C, H, W) map -> (K, C, s, s)."""
    from torchvision.extension import _has_ops
    from torchvision.ops import roi_align

    if _has_ops():
        return roi_align(feat, [boxes_px], output_size=output_size, spatial_scale=spatial_scale, aligned=True)
    side = max(1.0, float(((boxes_px[:, 2:] - boxes_px[:, :2]).abs().max() * spatial_scale).ceil()) + output_size)
    step = max(1, int(_CHUNK_BUDGET // (feat.shape[1] * side * side)))
    return torch.cat(
        [
            roi_align_grid_sample(feat, boxes_px[i : i + step], output_size, spatial_scale)
            for i in range(0, boxes_px.shape[0], step)
        ]
    )


def _match_channels(x: torch.Tensor, dim: int) -> torch.Tensor:
    c = x.shape[-1]
    if c == dim:
        return x
    if c > dim:
        return x[..., :dim]
    return torch.cat([x, x.new_zeros(x.shape[:-1] + (dim - c,))], dim=-1)


class ROIProposalHelper(nn.Module):
    def __init__(
        self,
        seg_dim: int,
        hidden_dim: int = 256,
        roi_size: int = 7,
        level_channels: tuple[int, ...] = (32, 64, 256),
        clamp_boxes: bool = True,
    ):
        super().__init__()
        self.clamp_boxes = clamp_boxes  # SelectorSpec.clamp_boxes
        self.hidden_dim = hidden_dim
        self.roi_size = roi_size
        self.level_channels = tuple(level_channels)
        self.query_proj = nn.Linear(seg_dim, hidden_dim)
        self.seg_proj = nn.Linear(seg_dim, hidden_dim)
        self.level_token_proj = nn.ModuleList(nn.Linear(c, hidden_dim) for c in self.level_channels)
        self.level_pool_proj = nn.ModuleList(nn.Linear(c, hidden_dim) for c in self.level_channels)
        self.score_head = nn.Sequential(
            nn.Linear(3 * hidden_dim, hidden_dim), nn.ReLU(inplace=True), nn.Linear(hidden_dim, 1)
        )

    def forward(
        self,
        queries: torch.Tensor,
        boxes: torch.Tensor,
        pyramid: list[torch.Tensor],
        image_size: int,
        proposal_tokens: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """ROI logits (N_q, N_p) for queries (N_q, seg_dim) and normalised xyxy boxes (N_p, 4).

        ``proposal_tokens``: :meth:`proposal_tokens` of the same boxes and pyramid, when the caller has them (they
        do not depend on the queries)."""
        nq, np_ = queries.shape[0], boxes.shape[0]
        if nq == 0 or np_ == 0 or not pyramid:
            return queries.new_zeros(nq, np_)
        if proposal_tokens is None:
            proposal_tokens = self.proposal_tokens(boxes, pyramid, image_size, queries.dtype)
        tokens, proposal_global = proposal_tokens
        q = self.query_proj(queries)  # (N_q, hidden)
        attn = torch.einsum("qd,ptd->qpt", q, tokens) / math.sqrt(self.hidden_dim)
        attn = torch.nan_to_num(torch.softmax(attn, dim=-1), nan=0.0)
        z = torch.einsum("qpt,ptd->qpd", attn, tokens)
        fused = torch.cat(
            [
                z,
                proposal_global.unsqueeze(0).expand(nq, -1, -1),
                self.seg_proj(queries).unsqueeze(1).expand(-1, np_, -1),
            ],
            dim=-1,
        )
        return self.score_head(fused).squeeze(-1)

    def proposal_tokens(
        self, boxes: torch.Tensor, pyramid: list[torch.Tensor], image_size: int, dtype: torch.dtype = torch.float32
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The query-independent part: per proposal, its ROI tokens over the levels (N_p, T, hidden) and its
        global vector (N_p, hidden)."""
        px = (boxes.float().clamp(0, 1) if self.clamp_boxes else boxes.float()) * float(image_size)
        tokens, pooled = [], []
        for i, feat in enumerate(pyramid[: len(self.level_channels)]):
            roi = roi_align_features(feat.float(), px, self.roi_size, feat.shape[-2] / float(image_size))
            roi = roi.to(dtype)
            level_tokens = _match_channels(roi.flatten(2).transpose(1, 2), self.level_channels[i])
            tokens.append(self.level_token_proj[i](level_tokens))
            pooled.append(self.level_pool_proj[i](_match_channels(roi.mean(dim=(-1, -2)), self.level_channels[i])))
        return torch.cat(tokens, dim=1), torch.stack(pooled).mean(dim=0)
