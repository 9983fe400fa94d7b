"""The released class-agnostic proposer (``sparrow-det-pretrain``): two-stage Deformable-DETR on a frozen SAM2 image
encoder, in plain torch (docs/design.md §5, §5.1).

Structure (``CustomDDETRSAM2Model``; state_dict keys follow the release, see :func:`release_key_map`):

- ``vis_encoder``: a SAM2 image encoder (Hiera-L trunk + FPN neck for the release), built by hydra from the sam2
  package's config, frozen. Only ``backbone_fpn[-1]`` is used (stride 16: 28 x 28 at the 448 input).
- ``input_proj.0``: 1x1 conv to d=256 + a channel LayerNorm (eps 1e-6).
- ``ddetr_transformer``: sine positions (transformers' ``DeformableDetrSinePositionEmbedding``, d/2 per axis,
  normalised) + ``level_embed``; 6 encoder layers of multi-scale deformable self-attention (8 heads, 4 points, one
  level) and 6 decoder layers (self-attention, deformable cross-attention), ReLU FFN 1024 — transformers'
  ``DeformableDetrEncoderLayer``/``DeformableDetrDecoderLayer``, whose attention falls back to the ``grid_sample``
  form without its CUDA kernel. Two-stage selection: every encoder position is a proposal (centre of its cell, size
  0.05, kept if inside (0.01, 0.99)), scored by ``class_embed_enc`` on ``enc_output_norm(enc_output(memory))``; the
  top ``num_queries`` (300) give the reference boxes ``sigmoid(bbox_embed[6](query) + proposal)``, detached. The
  positional query is the first half of ``pos_trans_norm(pos_trans(sine(boxes)))``, the content query the learned
  ``query_position_embeddings``. Every decoder layer attends with those **initial** boxes (the release comments the
  reference update out); layer l predicts ``sigmoid(bbox_embed[l](h_l) + logit(ref_{l-1}))`` with ``ref_0`` the
  initial boxes and ``ref_l = sigmoid(bbox_embed[l-1](h_{l-1}) + logit(initial))``, and two objectness heads
  ``class_embed_coco[l]``, ``class_embed_sa1b[l]``.

Forward, comparable with the official ``CustomDDETRSAM2Model(images=x)``: ``DeformableProposer.forward(x)`` with
``x`` (B, 3, S, S) ImageNet-normalised (S = 448) returns a :class:`~sparrow.model.proposer.ProposerOutput` with
per-layer ``logits_coco``/``logits_sa1b`` (L, B, Q) (the official ``logits[...]`` is the last layer with a trailing
label dim of 1), ``boxes`` (L, B, Q, 4) cx, cy, w, h (official ``pred_boxes`` = ``boxes[-1]``) and ``hidden``
(B, Q, d) = the official ``last_hidden_state``.

Proposals (``DDETRProposalGenerator``): score ``sigmoid(coco)^0.3 * sigmoid(sa1b)^0.7``, the top 100 with their
boxes as normalised x0, y0, x1, y1 (**not** clamped) and their decoder states; no NMS. Input chain
(:meth:`DeformableProposer.preprocess`): the frame rounded to uint8, PIL ``resize((448, 448))`` (bicubic),
``ToTensor`` and the ImageNet mean/std.

Released folders: :func:`load_release` reads one HF Trainer ``checkpoint-*`` folder (``config.json`` of
``model_type`` ``ddetr_sam2`` with its ``ddetr_cfg`` diff dict; ``model.safetensors`` or ``pytorch_model.bin``,
sharded or not, read with ``weights_only=True``), maps the keys (:func:`release_key_map`, the same map
``sparrow convert --proposer`` uses) and loads strictly with a printed report.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sparrow.model.config import ProposerSpec
from sparrow.model.proposer import (
    DetectionLoss,
    Proposals,
    ProposerOutput,
    box_cxcywh_to_xyxy,
)
from sparrow.model.release_files import ReleaseError, read_weights
from sparrow.model.state_report import KeyMap, Report, Rule, Section, identity_map, load_strict

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BOX_HEAD_HIDDEN = 256  # the release's bbox_embed hidden width, whatever d_model is
PRIOR_PROB = 0.01
SAM2_CONFIG_DIR = "configs/sam2/"  # where the sam2 package keeps the configs the release names by file name


def _layers_config(spec: ProposerSpec):
    from transformers import DeformableDetrConfig

    return DeformableDetrConfig(
        d_model=spec.d_model,
        encoder_layers=spec.encoder_layers,
        decoder_layers=spec.decoder_layers,
        encoder_attention_heads=spec.num_heads,
        decoder_attention_heads=spec.num_heads,
        encoder_ffn_dim=spec.ffn_dim,
        decoder_ffn_dim=spec.ffn_dim,
        encoder_n_points=spec.num_points,
        decoder_n_points=spec.num_points,
        num_feature_levels=1,
        num_queries=spec.num_queries,
        two_stage=True,
        two_stage_num_proposals=spec.num_queries,
        with_box_refine=True,
        num_labels=1,
        use_timm_backbone=False,
        use_pretrained_backbone=False,
        attn_implementation="eager",
    )


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channels of a (B, C, H, W) map (the release's ``LayerNorm``, eps 1e-6)."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.layer_norm(x.permute(0, 2, 3, 1), x.shape[1:2], self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class _Stack(nn.Module):
    def __init__(self, layers):
        super().__init__()
        self.layers = nn.ModuleList(layers)


def _init_deformable_attention(attn: nn.Module, heads: int, points: int) -> None:
    """Deformable-DETR's initialisation: offsets start on a ring of directions, uniform attention weights."""
    nn.init.zeros_(attn.sampling_offsets.weight)
    theta = torch.arange(heads, dtype=torch.float32) * (2.0 * math.pi / heads)
    grid = torch.stack([theta.cos(), theta.sin()], -1)
    grid = (grid / grid.abs().max(-1, keepdim=True)[0]).view(heads, 1, 1, 2).repeat(1, 1, points, 1)
    grid = grid * torch.arange(1, points + 1, dtype=torch.float32).view(1, 1, points, 1)
    with torch.no_grad():
        attn.sampling_offsets.bias.copy_(grid.reshape(-1))
    nn.init.zeros_(attn.attention_weights.weight)
    nn.init.zeros_(attn.attention_weights.bias)
    for proj in (attn.value_proj, attn.output_proj):
        nn.init.xavier_uniform_(proj.weight)
        nn.init.zeros_(proj.bias)


def proposal_pos_embed(coord_logits: torch.Tensor, num_pos_feats: int) -> torch.Tensor:
    """Sine embedding of (B, Q, 4) box logits: ``num_pos_feats`` per coordinate, (B, Q, 4 * num_pos_feats)."""
    dim_t = torch.arange(num_pos_feats, dtype=torch.float32, device=coord_logits.device)
    dim_t = 10000 ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / num_pos_feats)
    pos = coord_logits.sigmoid()[..., None] * (2 * math.pi) / dim_t
    return torch.stack((pos[..., 0::2].sin(), pos[..., 1::2].cos()), dim=-1).flatten(2)


def grid_proposals(height: int, width: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """One proposal per encoder position, as box logits (h*w, 4) and validity (h*w, 1): the cell centre, size
    0.05, valid strictly inside (0.01, 0.99); invalid logits are +inf."""
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=torch.float32, device=device),
        torch.arange(width, dtype=torch.float32, device=device),
        indexing="ij",
    )
    centres = torch.stack([(xs + 0.5) / width, (ys + 0.5) / height], -1).reshape(-1, 2)
    boxes = torch.cat([centres, torch.full_like(centres, 0.05)], -1)
    valid = ((boxes > 0.01) & (boxes < 0.99)).all(-1, keepdim=True)
    logits = torch.log(boxes / (1 - boxes)).masked_fill(~valid, float("inf"))
    return logits, valid


class DeformableTransformer(nn.Module):
    """The release's ``ddetr_transformer``: encoder, two-stage query selection, decoder and heads (one level)."""

    def __init__(self, spec: ProposerSpec):
        super().__init__()
        from transformers.models.deformable_detr.modeling_deformable_detr import (
            DeformableDetrDecoderLayer,
            DeformableDetrEncoderLayer,
            DeformableDetrMLPPredictionHead,
            DeformableDetrSinePositionEmbedding,
        )

        cfg = _layers_config(spec)
        d = spec.d_model
        self.d_model = d
        self.num_queries = spec.num_queries
        self.dropout = cfg.dropout
        self.encoder = _Stack(DeformableDetrEncoderLayer(cfg) for _ in range(spec.encoder_layers))
        self.decoder = _Stack(DeformableDetrDecoderLayer(cfg) for _ in range(spec.decoder_layers))
        self.position = DeformableDetrSinePositionEmbedding(d // 2, normalize=True)
        self.level_embed = nn.Parameter(torch.empty(1, d))
        self.query_position_embeddings = nn.Embedding(spec.num_queries, d)
        self.enc_output = nn.Linear(d, d)
        self.enc_output_norm = nn.LayerNorm(d)
        self.pos_trans = nn.Linear(2 * d, 2 * d)
        self.pos_trans_norm = nn.LayerNorm(2 * d)
        self.class_embed_enc = nn.Linear(d, 1)
        self.class_embed_coco = nn.ModuleList(nn.Linear(d, 1) for _ in range(spec.decoder_layers))
        self.class_embed_sa1b = nn.ModuleList(nn.Linear(d, 1) for _ in range(spec.decoder_layers))
        self.bbox_embed = nn.ModuleList(
            DeformableDetrMLPPredictionHead(d, BOX_HEAD_HIDDEN, 4, 3) for _ in range(spec.decoder_layers + 1)
        )
        self._reset_parameters(spec)

    def _reset_parameters(self, spec: ProposerSpec) -> None:
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        for layer in self.encoder.layers:
            _init_deformable_attention(layer.self_attn, spec.num_heads, spec.num_points)
        for layer in self.decoder.layers:
            _init_deformable_attention(layer.encoder_attn, spec.num_heads, spec.num_points)
        nn.init.normal_(self.level_embed)
        bias = -math.log((1 - PRIOR_PROB) / PRIOR_PROB)
        for head in [self.class_embed_enc, *self.class_embed_coco, *self.class_embed_sa1b]:
            nn.init.constant_(head.bias, bias)
        for head in self.bbox_embed:
            nn.init.zeros_(head.layers[-1].weight)
            nn.init.zeros_(head.layers[-1].bias)

    def forward(self, src: torch.Tensor) -> ProposerOutput:
        """``src``: (B, d, h, w) projected backbone features, h * w >= num_queries."""
        from transformers.models.deformable_detr.modeling_deformable_detr import (
            DeformableDetrEncoder,
            inverse_sigmoid,
        )

        b, d, h, w = src.shape
        if h * w < self.num_queries:
            raise ValueError(f"a {h}x{w} feature map has fewer positions than the {self.num_queries} queries")
        pos = self.position(src.shape, src.device, torch.float32).to(src.dtype)
        pos = pos.flatten(2).transpose(1, 2) + self.level_embed[0].view(1, 1, -1)
        shapes_list = [(h, w)]
        levels = dict(
            spatial_shapes=torch.tensor(shapes_list, dtype=torch.long, device=src.device),
            spatial_shapes_list=shapes_list,
            level_start_index=torch.zeros(1, dtype=torch.long, device=src.device),
        )
        valid_ratios = torch.ones(b, 1, 2, dtype=src.dtype, device=src.device)
        reference = DeformableDetrEncoder.get_reference_points(tuple(shapes_list), valid_ratios, src.device)
        memory = F.dropout(src.flatten(2).transpose(1, 2), p=self.dropout, training=self.training)
        for layer in self.encoder.layers:
            memory = layer(memory, None, spatial_position_embeddings=pos, reference_points=reference, **levels)

        proposal_logits, valid = grid_proposals(h, w, src.device)
        queries = self.enc_output_norm(self.enc_output(memory.masked_fill(~valid, 0.0)))
        enc_class = self.class_embed_enc(queries)[..., 0]
        enc_coords = self.bbox_embed[-1](queries) + proposal_logits.to(queries.dtype)
        top = torch.topk(enc_class, self.num_queries, dim=1).indices
        coords = torch.gather(enc_coords, 1, top.unsqueeze(-1).expand(-1, -1, 4)).detach()
        ref = coords.sigmoid()
        query_pos = self.pos_trans_norm(self.pos_trans(proposal_pos_embed(coords, d // 2).to(src.dtype)))[..., :d]
        hidden = self.query_position_embeddings.weight.unsqueeze(0).expand(b, -1, -1)

        init_logits = inverse_sigmoid(ref)
        coco, sa1b, boxes = [], [], []
        previous = init_logits
        for i, layer in enumerate(self.decoder.layers):
            hidden = layer(
                hidden,
                object_queries_position_embeddings=query_pos,
                reference_points=ref[:, :, None],
                encoder_hidden_states=memory,
                **levels,
            )
            delta = self.bbox_embed[i](hidden)
            boxes.append((delta + previous).sigmoid())
            previous = inverse_sigmoid((delta + init_logits).sigmoid())
            coco.append(self.class_embed_coco[i](hidden)[..., 0])
            sa1b.append(self.class_embed_sa1b[i](hidden)[..., 0])
        return ProposerOutput(torch.stack(coco), torch.stack(sa1b), torch.stack(boxes), hidden)


def build_backbone(spec: ProposerSpec) -> nn.Module:
    """The SAM2 image encoder of ``spec.backbone`` (a sam2 package config, or a local ``.yaml`` file such as the
    one a release's bundled sam2 names), tiny if ``spec.backbone_tiny``."""
    import sam2  # noqa: F401  (initialises sam2's hydra config module)
    from hydra import compose
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from sparrow.model.pixel_decoder import tiny_overrides

    overrides = tiny_overrides(spec.image_size or 64) if spec.backbone_tiny else []
    if Path(spec.backbone).suffix == ".yaml" and Path(spec.backbone).is_file():
        cfg = OmegaConf.load(spec.backbone)
        if overrides:
            cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist([o.lstrip("+") for o in overrides]))
    else:
        cfg = compose(config_name=spec.backbone, overrides=overrides)
    OmegaConf.resolve(cfg)
    return instantiate(cfg.model.image_encoder, _recursive_=True)


class DeformableProposer(DetectionLoss, nn.Module):
    """``ProposerSpec.kind="deformable_detr"``: backbone copy + input projection + ``ddetr_transformer``."""

    owns_backbone = True

    def __init__(self, spec: ProposerSpec):
        super().__init__()
        self.spec = spec
        self.vis_encoder = build_backbone(spec)
        self.vis_encoder.requires_grad_(False)
        channels = self.vis_encoder.neck.convs[-1].conv.out_channels
        self.in_channels = int(channels)
        proj = nn.Sequential(nn.Conv2d(channels, spec.d_model, kernel_size=1), ChannelLayerNorm(spec.d_model))
        nn.init.xavier_uniform_(proj[0].weight)
        nn.init.zeros_(proj[0].bias)
        self.input_proj = nn.ModuleList([proj])
        self.ddetr_transformer = DeformableTransformer(spec)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> DeformableProposer:
        super().train(mode)
        self.vis_encoder.eval()  # frozen, as the release's freeze_vis_encoder
        return self

    def backbone_features(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, S/16, S/16): the image encoder's last FPN level."""
        trainable = torch.is_grad_enabled() and any(p.requires_grad for p in self.vis_encoder.parameters())
        with torch.set_grad_enabled(trainable):
            return self.vis_encoder(images)["backbone_fpn"][-1]

    def forward(self, images: torch.Tensor) -> ProposerOutput:
        """``images``: (B, 3, S, S) ImageNet-normalised (:meth:`preprocess`)."""
        feats = self.backbone_features(images.to(self.input_proj[0][0].weight.dtype))
        return self.ddetr_transformer(self.input_proj[0](feats))

    @torch.no_grad()
    def preprocess(self, frame: torch.Tensor) -> torch.Tensor:
        """The release's input chain for one frame (3, H, W) in [0, 1] -> (1, 3, S, S) on the proposer's device."""
        from PIL import Image

        size = self.spec.image_size or frame.shape[-1]
        pixels = (frame.detach().float().cpu() * 255.0).round().clamp(0, 255).to(torch.uint8)
        image = Image.fromarray(pixels.permute(1, 2, 0).numpy()).resize((size, size), Image.BICUBIC)
        x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1).unsqueeze(0)
        return (x.to(self.mean.device) - self.mean) / self.std

    @torch.no_grad()
    def propose(self, images: torch.Tensor) -> list[Proposals]:
        """Top-k proposals per image of (B, 3, S, S) preprocessed frames, in eval mode as the release's wrapper."""
        was_training = self.training
        self.eval()
        try:
            out = self.forward(images)
        finally:
            self.train(was_training)
        p0, p1 = self.spec.score_power
        scores = out.logits_coco[-1].float().sigmoid().pow(p0) * out.logits_sa1b[-1].float().sigmoid().pow(p1)
        k = min(self.spec.topk, scores.shape[1])
        result = []
        for i in range(scores.shape[0]):
            top = scores[i].topk(k)
            boxes = box_cxcywh_to_xyxy(out.boxes[-1, i, top.indices].float())
            valid = torch.ones(k, dtype=torch.bool, device=scores.device)
            result.append(Proposals(boxes, out.hidden[i, top.indices], top.values, valid))
        return result

    # -- persistence -------------------------------------------------------------------------------------------
    def load_backbone(self, sam_checkpoint: Path) -> Report:
        """Seed the backbone from a sam2 checkpoint (``{"model": state_dict}``): its ``image_encoder.*``."""
        data = torch.load(sam_checkpoint, map_location="cpu", weights_only=True)
        state = data.get("model", data)
        prefix = "image_encoder."
        encoder = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        return load_strict(self.vis_encoder, identity_map(f"image encoder {sam_checkpoint}"), {"release": encoder})

    def save_pretrained(self, directory: str | Path) -> None:
        """``proposer.json`` and ``model.safetensors`` (the kit's proposer folder), written atomically."""
        from sparrow.model.checkpoint import save_state
        from sparrow.storage import atomic_write_json

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_state(self, directory / "model.safetensors")
        atomic_write_json(directory / "proposer.json", self.effective_spec())

    def effective_spec(self) -> dict:
        return {"spec": dataclasses.asdict(self.spec), "in_channels": self.in_channels}


# -- released checkpoint-* folders -------------------------------------------------------------------------------


def release_key_map() -> KeyMap:
    """A ``checkpoint-*`` folder's keys (input ``release``) -> :class:`DeformableProposer` keys. transformers 5
    names the FFN of its Deformable-DETR layers ``mlp.fc1``/``mlp.fc2`` and the decoder self-attention output
    ``o_proj``; the heads the release registers a second time under ``ddetr_transformer.decoder.`` (one module, two
    names) are aliases of the same kit parameter. ``.under(prefix, source)`` places it in a larger model."""
    rules = (
        Rule(r"(ddetr_transformer\.(?:en|de)coder\.layers\.\d+)\.fc([12])\.(weight|bias)", r"\1.mlp.fc\2.\3"),
        Rule(r"(ddetr_transformer\.decoder\.layers\.\d+\.self_attn)\.out_proj\.(weight|bias)", r"\1.o_proj.\2"),
        Rule(
            r"ddetr_transformer\.decoder\.(bbox_embed|class_embed_coco|class_embed_sa1b|class_embed_enc)\.(.+)",
            r"ddetr_transformer.\1.\2",
            alias=True,
        ),
        Rule(r"(.+)", r"\1"),
    )
    return KeyMap("Deformable-DETR proposer", (Section("proposer (sparrow-det-pretrain)", "release", "", "", rules),))


# DeformableDetrConfig defaults for the fields a diff dict leaves out (the same in transformers 4.31 to 5).
_DETR_DEFAULTS = dict(
    d_model=256,
    encoder_layers=6,
    decoder_layers=6,
    encoder_attention_heads=8,
    decoder_attention_heads=8,
    encoder_ffn_dim=1024,
    decoder_ffn_dim=1024,
    encoder_n_points=4,
    decoder_n_points=4,
    num_feature_levels=4,
    num_queries=300,
    two_stage=False,
    two_stage_num_proposals=300,
    with_box_refine=False,
    num_labels=91,
    activation_function="relu",
)


@dataclass
class ReleaseProposer:
    """A loaded release folder: the proposer and the key report."""

    proposer: DeformableProposer
    report: Report


def release_spec(
    config: dict, base: ProposerSpec | None = None, source: str = "config.json", sam_config: str | Path | None = None
) -> ProposerSpec:
    """The :class:`ProposerSpec` of a release ``config.json`` (``CustomDDETRSAM2Config``); ``base`` supplies the
    inference fields (top-k, score powers, input size); ``sam_config``: a local SAM2 yaml for the backbone instead
    of the sam2 package's config of the name ``sam2_cfg`` gives."""
    if config.get("model_type") != "ddetr_sam2":
        raise ReleaseError(f"{source}: model_type {config.get('model_type')!r} is not 'ddetr_sam2'")
    detr = {**_DETR_DEFAULTS, **(config.get("ddetr_cfg") or {})}
    if detr["num_labels"] == 91 and "id2label" in detr:
        detr["num_labels"] = len(detr["id2label"])
    unsupported = [
        f"{name}={detr[name]!r}"
        for name, want in (
            ("two_stage", True),
            ("with_box_refine", True),
            ("num_feature_levels", 1),
            ("num_labels", 1),
            ("activation_function", "relu"),
        )
        if detr[name] != want
    ]
    if detr["encoder_attention_heads"] != detr["decoder_attention_heads"]:
        unsupported.append("different encoder/decoder heads")
    if detr["encoder_ffn_dim"] != detr["decoder_ffn_dim"] or detr["encoder_n_points"] != detr["decoder_n_points"]:
        unsupported.append("different encoder/decoder FFN or points")
    if unsupported:
        raise ReleaseError(f"{source}: unsupported proposer configuration: {', '.join(unsupported)}")
    sam2_cfg = str(config.get("sam2_cfg") or "sam2_hiera_l.yaml")
    backbone = sam2_cfg if sam2_cfg.startswith("configs/") else SAM2_CONFIG_DIR + Path(sam2_cfg).name
    if sam_config is not None:
        backbone = str(sam_config)
    base = base or ProposerSpec(kind="deformable_detr", topk=100, image_size=448)
    return dataclasses.replace(
        base,
        kind="deformable_detr",
        d_model=int(detr["d_model"]),
        encoder_layers=int(detr["encoder_layers"]),
        decoder_layers=int(detr["decoder_layers"]),
        num_heads=int(detr["encoder_attention_heads"]),
        ffn_dim=int(detr["encoder_ffn_dim"]),
        num_points=int(detr["encoder_n_points"]),
        num_queries=int(detr["two_stage_num_proposals"]),
        backbone=backbone,
        backbone_checkpoint=None,
    )


def read_release_config(folder: str | Path) -> dict:
    """``config.json`` of one released ``checkpoint-*`` folder; the repository folder above them is refused with
    the names of its checkpoints."""
    from sparrow.storage import read_json

    folder = Path(folder)
    if not (folder / "config.json").is_file():
        found = sorted(p.name for p in folder.glob("checkpoint-*")) if folder.is_dir() else []
        hint = f"; pass one of its checkpoint folders: {', '.join(found)}" if found else ""
        raise ReleaseError(f"{folder}: no config.json of a released proposer{hint}")
    return read_json(folder / "config.json")


def load_release(
    folder: str | Path, base: ProposerSpec | None = None, verbose: bool = False, sam_config: str | Path | None = None
) -> ReleaseProposer:
    """Build and load one released ``checkpoint-*`` folder (Trainer state files are ignored); ``sam_config`` as in
    :func:`release_spec`."""
    folder = Path(folder)
    spec = release_spec(read_release_config(folder), base, str(folder / "config.json"), sam_config)
    proposer = DeformableProposer(spec)
    state, _ = read_weights(folder)
    keymap = dataclasses.replace(release_key_map(), name=f"proposer {folder}")
    report = load_strict(proposer, keymap, {"release": state})
    if verbose:
        print(report)
    return ReleaseProposer(proposer.eval(), report)
