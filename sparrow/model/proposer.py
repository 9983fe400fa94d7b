"""The class-agnostic proposer box: boxes and features of frame 0, two kinds behind one interface.

``ProposerSpec.kind``: ``deformable_detr`` is the released proposer itself (:mod:`sparrow.model.deformable_detr`,
the paper preset); ``detr`` is the kit's small head below (the tiny presets). Both give a :class:`ProposerOutput`
from ``forward``, :class:`Proposals` from ``propose``, share :class:`DetectionLoss`, and say whether they hold their
own backbone (``owns_backbone``: the input is then the frame itself, through the proposer's ``preprocess``).
:func:`build_proposer`, :func:`proposer_from_json` and :func:`load_proposer` choose the kind.

Released code (docs/design.md §5): ``CustomDDETRSAM2Model``, a two-stage Deformable-DETR (6 encoder + 6 decoder
layers, 300 queries, iterative box refinement, one class) on a frozen SAM2 Hiera-L backbone whose FPN level is
projected by a 1x1 conv + LayerNorm to d=256; two objectness heads (``coco`` and ``sa1b``, Groma style); run on frame 0
resized to 448x448; per-query score ``sigmoid(coco)^0.3 * sigmoid(sa1b)^0.7``; top-100 queries kept with their
boxes and 256-d decoder states; no NMS. Its weights load from their own folder, outside the MLLM checkpoint.

The kit's ``detr`` head, written small to train in minutes on a CPU: one SAM2 feature level (the stride-16
map) -> 1x1 conv + channel LayerNorm -> sine position encoding (sam2's ``PositionEmbeddingSine``) -> a transformer
encoder -> learned queries through DETR decoder layers with conditional query positions and iterative box refinement
(each layer predicts a delta on the inverse-sigmoid of the previous boxes) -> ``coco`` and ``sa1b`` objectness heads
shared by all layers. Training (the "proposer" stage, paper's Stage 0): Hungarian matching with scipy
(``linear_sum_assignment``; costs class 2 (focal form), L1 5, GIoU 2), focal loss 2 (alpha 0.25) on both heads, L1 5
and GIoU 2 on matched boxes, auxiliary losses on every decoder layer. Differences: no deformable attention, one
feature level, no two-stage query selection; both heads are trained on the same class-agnostic boxes (the released
pretraining feeds COCO-like datasets to ``coco`` and SA-1B to ``sa1b``). Backbone input: by default the pixel
decoder's frame-0 features are reused (``ProposerSpec.image_size=None``); with an ``image_size`` frame 0 is
re-encoded at that size by the same frozen SAM2 encoder.

The proposer is a submodule of the SPARROW model here (the released code keeps it outside the MLLM state_dict), so
one checkpoint holds everything; ``save_pretrained``/``from_pretrained`` also write and read it alone.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from sparrow.model.config import ProposerSpec


def box_cxcywh_to_xyxy(b: torch.Tensor) -> torch.Tensor:
    cx, cy, w, h = b.unbind(-1)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)


def box_xyxy_to_cxcywh(b: torch.Tensor) -> torch.Tensor:
    x0, y0, x1, y1 = b.unbind(-1)
    return torch.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], dim=-1)


def inverse_sigmoid(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    x = x.clamp(eps, 1 - eps)
    return torch.log(x / (1 - x))


class _ChannelNorm(nn.Module):
    """LayerNorm over the channels of a (B, C, H, W) map."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class _DecoderLayer(nn.Module):
    def __init__(self, d: int, heads: int, ffn: int):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.ffn = nn.Sequential(nn.Linear(d, ffn), nn.ReLU(inplace=True), nn.Linear(ffn, d))
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)

    def forward(self, tgt, qpos, memory, mpos):
        q = tgt + qpos
        tgt = self.norm1(tgt + self.self_attn(q, q, tgt, need_weights=False)[0])
        tgt = self.norm2(tgt + self.cross_attn(tgt + qpos, memory + mpos, memory, need_weights=False)[0])
        return self.norm3(tgt + self.ffn(tgt))


@dataclass
class ProposerOutput:
    logits_coco: torch.Tensor  # (L, B, Q) per decoder layer
    logits_sa1b: torch.Tensor  # (L, B, Q)
    boxes: torch.Tensor  # (L, B, Q, 4) normalised cx, cy, w, h
    hidden: torch.Tensor  # (B, Q, d) last decoder layer


@dataclass
class Proposals:
    boxes: torch.Tensor  # (K, 4) normalised xyxy
    features: torch.Tensor  # (K, d)
    scores: torch.Tensor  # (K,)
    valid: torch.Tensor  # (K,) bool


class DetectionLoss:
    """The pretraining loss of a proposer whose ``forward`` gives a :class:`ProposerOutput` (``self.spec``: its
    :class:`ProposerSpec`)."""

    spec: ProposerSpec

    # -- pretraining loss ------------------------------------------------------------------------------------
    @torch.no_grad()
    def match(
        self, out: ProposerOutput, layer: int, targets: list[torch.Tensor]
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Hungarian matching per image: (query indices, target indices)."""
        from scipy.optimize import linear_sum_assignment
        from torchvision.ops import generalized_box_iou

        s = self.spec
        result = []
        for i, tgt in enumerate(targets):
            if tgt.shape[0] == 0:
                empty = torch.zeros(0, dtype=torch.long)
                result.append((empty, empty))
                continue
            cost_class = 0.5 * (
                self._focal_cost(out.logits_coco[layer, i]) + self._focal_cost(out.logits_sa1b[layer, i])
            )
            pred = out.boxes[layer, i].float()
            tgt = tgt.float().to(pred.device)
            cost_l1 = torch.cdist(pred, box_xyxy_to_cxcywh(tgt), p=1)
            cost_giou = -generalized_box_iou(box_cxcywh_to_xyxy(pred), tgt)
            cost = s.cost_class * cost_class[:, None] + s.cost_l1 * cost_l1 + s.cost_giou * cost_giou
            rows, cols = linear_sum_assignment(cost.cpu().numpy())
            result.append((torch.as_tensor(rows, dtype=torch.long), torch.as_tensor(cols, dtype=torch.long)))
        return result

    def _focal_cost(self, logits: torch.Tensor) -> torch.Tensor:
        a, g = self.spec.focal_alpha, self.spec.focal_gamma
        p = logits.float().sigmoid()
        neg = (1 - a) * p.pow(g) * (-(1 - p + 1e-8).log())
        pos = a * (1 - p).pow(g) * (-(p + 1e-8).log())
        return pos - neg

    def detection_loss(self, out: ProposerOutput, targets: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Weighted focal + L1 + GIoU over every decoder layer; ``targets``: per image (n, 4) normalised xyxy."""
        from torchvision.ops import generalized_box_iou, sigmoid_focal_loss

        s = self.spec
        num_boxes = max(1.0, float(sum(int(t.shape[0]) for t in targets)))
        cls_total = out.boxes.new_zeros(())
        l1_total = out.boxes.new_zeros(())
        giou_total = out.boxes.new_zeros(())
        for layer in range(out.boxes.shape[0]):
            matches = self.match(out, layer, targets)
            labels = torch.zeros_like(out.logits_coco[layer], dtype=torch.float32)
            for i, (rows, _) in enumerate(matches):
                labels[i, rows.to(labels.device)] = 1.0
            for logits in (out.logits_coco[layer], out.logits_sa1b[layer]):
                cls_total = (
                    cls_total
                    + sigmoid_focal_loss(
                        logits.float(), labels, alpha=s.focal_alpha, gamma=s.focal_gamma, reduction="sum"
                    )
                    / num_boxes
                )
            for i, (rows, cols) in enumerate(matches):
                if rows.numel() == 0:
                    continue
                pred = out.boxes[layer, i, rows.to(out.boxes.device)].float()
                tgt = targets[i][cols.to(targets[i].device)].float().to(pred.device)
                l1_total = l1_total + (pred - box_xyxy_to_cxcywh(tgt)).abs().sum() / num_boxes
                giou = torch.diag(generalized_box_iou(box_cxcywh_to_xyxy(pred), tgt))
                giou_total = giou_total + (1 - giou).sum() / num_boxes
        return {
            "det_cls": s.loss_class * cls_total,
            "det_l1": s.loss_l1 * l1_total,
            "det_giou": s.loss_giou * giou_total,
        }


class ClassAgnosticProposer(DetectionLoss, nn.Module):
    """The kit's DETR head (``ProposerSpec.kind="detr"``) on the pixel decoder's SAM2 features."""

    owns_backbone = False

    def __init__(self, spec: ProposerSpec, in_channels: int):
        super().__init__()
        from sam2.modeling.position_encoding import PositionEmbeddingSine

        self.spec = spec
        self.in_channels = in_channels
        d = spec.d_model
        self.input_proj = nn.Sequential(nn.Conv2d(in_channels, d, kernel_size=1), _ChannelNorm(d))
        self.position = PositionEmbeddingSine(num_pos_feats=d, normalize=True)
        layer = nn.TransformerEncoderLayer(d, spec.num_heads, spec.ffn_dim, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, spec.encoder_layers, enable_nested_tensor=False)
        self.query_content = nn.Embedding(spec.num_queries, d)
        centres = torch.rand(spec.num_queries, 2) * 0.9 + 0.05
        sizes = torch.full((spec.num_queries, 2), 0.2)
        self.reference = nn.Parameter(inverse_sigmoid(torch.cat([centres, sizes], dim=1)))
        self.query_pos = nn.Sequential(nn.Linear(4, d), nn.ReLU(inplace=True), nn.Linear(d, d))
        self.layers = nn.ModuleList(_DecoderLayer(d, spec.num_heads, spec.ffn_dim) for _ in range(spec.decoder_layers))
        self.box_delta = nn.Sequential(
            nn.Linear(d, d), nn.ReLU(inplace=True), nn.Linear(d, d), nn.ReLU(inplace=True), nn.Linear(d, 4)
        )
        nn.init.zeros_(self.box_delta[-1].weight)
        nn.init.zeros_(self.box_delta[-1].bias)
        self.coco_head = nn.Linear(d, 1)
        self.sa1b_head = nn.Linear(d, 1)
        prior = -torch.log(torch.tensor((1 - 0.01) / 0.01))  # focal-loss prior probability 0.01
        for head in (self.coco_head, self.sa1b_head):
            nn.init.constant_(head.bias, float(prior))

    # -- forward ---------------------------------------------------------------------------------------------
    def forward(self, features: torch.Tensor) -> ProposerOutput:
        """``features``: (B, C, h, w) SAM2 stride-16 features."""
        src = self.input_proj(features.to(self.input_proj[0].weight.dtype))
        pos = self.position(src).to(src.dtype)
        b = src.shape[0]
        memory = self.encoder(src.flatten(2).transpose(1, 2) + pos.flatten(2).transpose(1, 2))
        mpos = pos.flatten(2).transpose(1, 2)
        tgt = self.query_content.weight.unsqueeze(0).expand(b, -1, -1)
        ref = self.reference.sigmoid().unsqueeze(0).expand(b, -1, -1)
        coco, sa1b, boxes = [], [], []
        for layer in self.layers:
            tgt = layer(tgt, self.query_pos(ref.detach()), memory, mpos)
            # The learned initial boxes get gradients through layer 0; later layers refine detached boxes.
            new = (inverse_sigmoid(ref) + self.box_delta(tgt)).sigmoid()
            coco.append(self.coco_head(tgt).squeeze(-1))
            sa1b.append(self.sa1b_head(tgt).squeeze(-1))
            boxes.append(new)
            ref = new.detach()
        return ProposerOutput(torch.stack(coco), torch.stack(sa1b), torch.stack(boxes), tgt)

    @torch.no_grad()
    def propose(self, features: torch.Tensor) -> list[Proposals]:
        """Top-k proposals per image by the fused score ``coco^p0 * sa1b^p1`` (no NMS, as the released MLLM path)."""
        out = self.forward(features)
        p0, p1 = self.spec.score_power
        scores = out.logits_coco[-1].sigmoid().pow(p0) * out.logits_sa1b[-1].sigmoid().pow(p1)
        k = min(self.spec.topk, scores.shape[1])
        result = []
        for i in range(scores.shape[0]):
            top = scores[i].float().topk(k)
            boxes = box_cxcywh_to_xyxy(out.boxes[-1, i, top.indices].float()).clamp(0, 1)
            result.append(
                Proposals(
                    boxes, out.hidden[i, top.indices], top.values, torch.ones(k, dtype=torch.bool, device=scores.device)
                )
            )
        return result

    # -- persistence -----------------------------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path) -> None:
        """``proposer.json`` (spec + input channels) and ``model.safetensors``, written atomically."""
        from safetensors.torch import save

        from sparrow.storage import atomic_write_bytes, atomic_write_json

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        atomic_write_bytes(directory / "model.safetensors", save(state))
        atomic_write_json(directory / "proposer.json", self.effective_spec())

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> ClassAgnosticProposer:
        proposer = load_proposer(directory)
        if not isinstance(proposer, cls):
            raise ValueError(f"{directory} holds a {type(proposer).__name__}, not a {cls.__name__}")
        return proposer

    def effective_spec(self) -> dict:
        return {"spec": dataclasses.asdict(self.spec), "in_channels": self.in_channels}

    @staticmethod
    def spec_from_json(data: dict) -> tuple[ProposerSpec, int]:
        spec_data = dict(data["spec"])
        spec_data["score_power"] = tuple(spec_data["score_power"])
        return ProposerSpec(**spec_data), int(data["in_channels"])


# -- construction by kind ------------------------------------------------------------------------------------------

PROPOSER_KINDS = ("detr", "deformable_detr")


def build_proposer(spec: ProposerSpec, in_channels: int) -> nn.Module:
    """A freshly initialised proposer of ``spec.kind``; ``in_channels``: the pixel decoder's feature width (the
    ``detr`` head's input; the ``deformable_detr`` proposer has its own backbone)."""
    if spec.kind == "deformable_detr":
        from sparrow.model.deformable_detr import DeformableProposer

        return DeformableProposer(spec)
    if spec.kind == "detr":
        return ClassAgnosticProposer(spec, in_channels)
    raise ValueError(f"unknown proposer kind {spec.kind!r}; choose one of {', '.join(PROPOSER_KINDS)}")


def proposer_from_json(data: dict) -> nn.Module:
    """An uninitialised proposer of a saved ``effective_spec`` (its weights are loaded afterwards)."""
    spec, in_channels = ClassAgnosticProposer.spec_from_json(data)
    return build_proposer(spec, in_channels)


def load_proposer(directory: str | Path, base: ProposerSpec | None = None) -> nn.Module:
    """A proposer folder: the kit's (``proposer.json`` + ``model.safetensors``) or a released ``checkpoint-*``
    folder of the Deformable-DETR proposer (``base``: the inference fields to keep, e.g. top-k)."""
    from sparrow.model.checkpoint import load_state_strict
    from sparrow.storage import read_json

    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"proposer folder not found: {directory} (ProposerSpec.path)")
    if not (directory / "proposer.json").is_file():
        from sparrow.model.deformable_detr import load_release

        return load_release(directory, base).proposer
    proposer = proposer_from_json(read_json(directory / "proposer.json"))
    load_state_strict(proposer, directory / "model.safetensors")
    return proposer
