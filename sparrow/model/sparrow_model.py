"""SparrowModel: the host MLLM with TSF tokens and the dual ``[BOX]``/``[SEG]`` prompt (the paper's figure, assembled).

Data flow (docs/design.md §1)::

    video (T, H, W, 3)
      |
      +- encoder frames -> spatial (+ temporal) encoder -> V->L adapters -> visual tokens -----+
      |                                                                                        |
      +- target crops ---> spatial encoder -> V->L adapter -> K-means medoids -> TSF tokens ---+
      |                                                                                        |
      |                                               question with <tsf> placeholders --------+
      |                                                                                        v
      |                                                                                       LLM --> CE loss
      |                                                                                        | "[BOX] [SEG]"
      |                                                                                        v
      |                                                                 L->V projector on the last-layer states
      |                                                                  | [BOX]                      | [SEG]
      +- SAM frames -> SAM2 image encoder -+- frame 0 -> proposer        |                            |
                                           |               | proposals   |                            |
                                           |               v             v                            |
                                           |          ProposalSelector + ROI helper (proposal loss)   |
                                           |               | selected boxes                           |
                                           |               v                                          |
                                           |          box prior filter (inference)                    |
                                           |               | box corners                              |
                                           |  features     v                                          |
                                           +---------> SAM2 mask decoder, on every SAM frame <--------+
                                                           |
                                                           v
                                                      masks (n, T, H, W) --> BCE + Dice losses

The stage says which arrows are on (``stage_behaviour``): TSF tokens in ``stage1``, the proposer/selector branch in
``stage2`` and at inference; stage ``proposer`` trains the proposer alone on SAM2 frame-0 features.

Training stages and LoRA: :mod:`sparrow.model.stages` (docs/design.md §10). Inference (greedy answer, per-video
sharing, GLUS's question windows): :mod:`sparrow.model.inference`. Checkpoint folders: :mod:`sparrow.model.checkpoint`.

Released code vs paper, and the switch for the other variant:

- TSF crops: ground-truth-mask crops in training (default); the paper's tracked crops come from ``sparrow.tsf`` and
  enter at inference through ``predict(..., tsf_embeddings=...)`` or ``tsf_boxes``.
- TSF at inference: off by default (released scripts); ``ModelConfig.tsf_at_test=True`` is the paper's best setting.
- ``[BOX]`` and ``[SEG]`` share the L->V projector (code); the paper's separate W_b has no switch (unspecified).
- Box-regression head: present, off (``SelectorSpec.box_regression``); its boxes never prompt SAM2.
- Proposer on frame 0 only; the same boxes prompt every frame; no NMS.
- Box prior filter: off in training, on at inference with ``max_keep=1`` (evaluation scripts).
- Propagation: framewise for VideoGLaMM (SPARROW's evaluation default); the SAM2 memory modes of UniPixel and GLUS
  are their presets. The released video-branch path that fails with boxes (``add_new_points_or_box``) is not copied:
  the kit's memory modes accept boxes.

Training forward: samples are batched where a module draws no random numbers (SAM2 encoder and mask decoder,
proposer, the CLIP tower on TSF crops); modules with LoRA dropout and SAM2's memory attention run per sample in the
original order, so the random stream of a step is the one of the unbatched code.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sparrow.model import checkpoint, inference, stages
from sparrow.model.batch import LOSS_KEYS, Prediction, SparrowBatch, SparrowOutput
from sparrow.model.box_prior_filter import filter_boxes, prior_scores
from sparrow.model.collator import FrameSizes, SparrowCollator
from sparrow.model.config import ModelConfig, StageBehaviour, stage_behaviour
from sparrow.model.dense_grounding import DenseGrounding, location_boxes
from sparrow.model.frame_zero import FrameZero, proposer_input
from sparrow.model.llm import LanguageModel, torch_dtype
from sparrow.model.losses import causal_lm_loss, mask_losses, proposal_bce, proposal_box_loss, proposal_targets
from sparrow.model.lv_projector import LVProjector
from sparrow.model.multimodal_inputs import MultimodalInputs, build_multimodal_inputs
from sparrow.model.pixel_decoder import FrameFeatures, Location, Locations, MemoryState, PixelDecoder, build_sam
from sparrow.model.proposal_selector import ProposalSelector, align_to_tokens, select_boxes
from sparrow.model.proposer import ClassAgnosticProposer, Proposals, build_proposer, load_proposer, proposer_from_json
from sparrow.model.roi_helper import ROIProposalHelper
from sparrow.model.spatial_encoder import SpatialEncoder
from sparrow.model.temporal_encoder import TemporalEncoder
from sparrow.model.tokens import token_id
from sparrow.model.vl_adapter import VLAdapter
from sparrow.tsf.kmeans import tsf_kmeans


def _grad_if_trainable(module: nn.Module | None) -> bool:
    return torch.is_grad_enabled() and module is not None and any(p.requires_grad for p in module.parameters())


@dataclass
class Components:
    """The figure's boxes of one model in registration order (which fixes the ``named_parameters`` order), the
    tokenizer, and the local SAM2 yaml the pixel decoder was built from (None: one of sam2's own configs)."""

    llm: LanguageModel
    spatial: SpatialEncoder
    temporal: TemporalEncoder | None
    image_adapter: VLAdapter
    video_adapter: VLAdapter | None
    pixel_decoder: PixelDecoder
    lv_projector: LVProjector
    proposer: ClassAgnosticProposer | None
    selector: ProposalSelector | None
    roi_helper: ROIProposalHelper | None
    roi_fusion_gamma: nn.Parameter | None
    grounding: DenseGrounding | None
    tokenizer: Any
    sam_yaml: Path | None


def build_components(cfg: ModelConfig, checkpoint_dir: Path | None = None) -> Components:
    """The components of ``cfg``.

    Pretrained parts come from the folders ``cfg`` names, or, with ``checkpoint_dir``, are rebuilt from the
    component configs saved there (their weights are loaded afterwards). The construction order is the order of
    random draws for the freshly initialised parts."""
    comp = checkpoint_dir / "components" if checkpoint_dir is not None else None
    if comp is not None:
        from transformers import AutoTokenizer

        llm = LanguageModel.from_saved_config(comp / "llm", cfg.hidden_state, cfg.llm.dtype)
        tokenizer = AutoTokenizer.from_pretrained(checkpoint_dir / "tokenizer", local_files_only=True)
    else:
        llm, tokenizer = LanguageModel.build(cfg.llm, cfg.vision, cfg.resolve(cfg.llm.path), cfg.hidden_state)
    d_llm = llm.hidden_size
    if cfg.vision.kind == "qwen2_5_vl":
        spatial = SpatialEncoder.build(cfg.vision, None, visual=llm.visual)
    elif comp is not None:
        spatial = SpatialEncoder.from_saved_config(comp / "vision", cfg.vision.select_layer)
    else:
        spatial = SpatialEncoder.build(cfg.vision, cfg.resolve(cfg.vision.path))
    temporal = None
    if cfg.temporal is not None:
        temporal = (
            TemporalEncoder.from_saved_config(comp / "temporal")
            if comp is not None
            else TemporalEncoder.build(cfg.temporal, cfg.resolve(cfg.temporal.path))
        )
    a = cfg.adapter
    image_adapter = VLAdapter(
        a.image_projector, spatial.output_dim, d_llm, a.context_pool_stride, a.token_pool_1d, a.pool_before_projection
    )
    video_adapter = None
    if temporal is not None:
        video_adapter = VLAdapter(a.video_projector or "mlp2x_gelu", temporal.output_dim, d_llm, a.video_pool_stride)
    if comp is not None:
        sam_yaml = comp / "sam2.yaml" if (comp / "sam2.yaml").is_file() else None
    else:
        sam_yaml = None if cfg.sam.config.startswith("configs/") else cfg.resolve(cfg.sam.config)
    sam_ckpt = None if comp is not None else cfg.resolve(cfg.sam.checkpoint)
    pixel_decoder = PixelDecoder(
        build_sam(cfg.sam, sam_yaml, sam_ckpt), cfg.sam.object_score_gating, cfg.selector.clamp_boxes
    )
    sam_dim = pixel_decoder.hidden_dim
    lv_projector = LVProjector(cfg.lv_projector, d_llm, sam_dim, cfg.seg_tokens_per_target, cfg.seg_head_norm_eps)
    proposer = selector = roi_helper = gamma = None
    if cfg.box:
        proposer = _proposer(cfg, comp, sam_dim)
        selector = ProposalSelector(sam_dim, proposer.spec.d_model, cfg.selector.hidden_dim)
        if cfg.selector.roi_helper:
            roi_helper = ROIProposalHelper(
                sam_dim,
                cfg.selector.roi_hidden_dim or sam_dim,
                cfg.selector.roi_size,
                pixel_decoder.level_channels,
                cfg.selector.clamp_boxes,
            )
        gamma = nn.Parameter(torch.tensor(float(cfg.selector.roi_fusion_init)))
    # Built last, so that the random draws of every other part are the ones of a model without it.
    grounding = DenseGrounding(cfg.grounding) if cfg.grounding is not None else None
    return Components(
        llm,
        spatial,
        temporal,
        image_adapter,
        video_adapter,
        pixel_decoder,
        lv_projector,
        proposer,
        selector,
        roi_helper,
        gamma,
        grounding,
        tokenizer,
        sam_yaml,
    )


def _proposer(cfg: ModelConfig, comp: Path | None, sam_dim: int) -> nn.Module:
    """The proposer of ``cfg.proposer.kind``: rebuilt from a checkpoint's component config, loaded from
    ``cfg.proposer.path``, or fresh (a ``deformable_detr`` backbone seeded from ``backbone_checkpoint``)."""
    if comp is not None:
        from sparrow.storage import read_json

        return proposer_from_json(read_json(comp / "proposer.json"))
    if cfg.proposer.path is not None:
        proposer = load_proposer(cfg.resolve(cfg.proposer.path), cfg.proposer)
        if not proposer.owns_backbone and proposer.in_channels != sam_dim:
            raise ValueError(
                f"proposer at {cfg.proposer.path} expects {proposer.in_channels}-channel SAM2 "
                f"features, the pixel decoder gives {sam_dim}"
            )
        return proposer
    proposer = build_proposer(cfg.proposer, sam_dim)
    if proposer.owns_backbone and cfg.proposer.backbone_checkpoint is not None:
        proposer.load_backbone(cfg.resolve(cfg.proposer.backbone_checkpoint))
    return proposer


@dataclass
class Prompt:
    """One sample's SAM2 prompt: [SEG] tokens (n, k, C), the selected boxes per token (None: token-only prompts),
    and the proposal and box losses (None unless detection guidance ran with targets)."""

    tokens: torch.Tensor
    boxes: list[torch.Tensor] | None = None
    prop_loss: torch.Tensor | None = None
    box_loss: torch.Tensor | None = None


class SparrowModel(nn.Module):
    """Build with :meth:`from_config` or :meth:`from_pretrained`."""

    llm: LanguageModel
    spatial: SpatialEncoder
    temporal: TemporalEncoder | None
    image_adapter: VLAdapter
    video_adapter: VLAdapter | None
    pixel_decoder: PixelDecoder
    lv_projector: LVProjector
    proposer: ClassAgnosticProposer | None
    selector: ProposalSelector | None
    roi_helper: ROIProposalHelper | None
    roi_fusion_gamma: nn.Parameter | None
    grounding: DenseGrounding | None
    tokenizer: Any
    sam_yaml: Path | None

    def __init__(self, cfg: ModelConfig, checkpoint_dir: Path | None = None):
        super().__init__()
        self.cfg = cfg
        parts = build_components(cfg, checkpoint_dir)
        for field in fields(parts):
            setattr(self, field.name, getattr(parts, field.name))
        self.seg_token_id = token_id(self.tokenizer, "[SEG]")
        self.box_token_id = token_id(self.tokenizer, "[BOX]")
        stages.inject_lora(self)
        self._cast(cfg.precision)
        self.stage = "stage1"
        self.configure_stage("stage1")

    def _cast(self, precision: str) -> None:
        # mixed: the LLM side runs in the configured dtype (bf16 at paper size); SAM2 and the box modules stay
        # float32 (sam2 itself relies on autocast for lower precision, and they are small next to the LLM).
        # float16 / bfloat16: the LLM side in that dtype; the other modules keep float32 storage holding values of
        # that dtype, and inference runs under autocast to it: matrix products and convolutions then see exactly
        # the released half-precision operands, and the layer norms run in float32 as CUDA autocast runs them
        # for the released half-precision modules (CPU autocast would not upcast their half parameters).
        llm_side = (self.llm, self.spatial, self.temporal, self.image_adapter, self.video_adapter, self.lv_projector)
        dtype = torch_dtype(self.cfg.llm.dtype if precision == "mixed" else precision)
        for part in llm_side:
            if part is not None:
                part.to(dtype)
        if precision == "mixed":
            return
        skip = {id(t) for part in llm_side if part is not None for t in (*part.parameters(), *part.buffers())}
        with torch.no_grad():
            for tensor in (*self.parameters(), *self.buffers()):
                if id(tensor) not in skip and tensor.is_floating_point():
                    tensor.copy_(tensor.to(dtype))

    def set_precision(self, precision: str) -> SparrowModel:
        """Cast the modules for ``precision`` (:data:`~sparrow.model.config.PRECISIONS`; inference then runs under
        autocast to it unless ``mixed``). Casting down drops bits that casting back up does not restore."""
        self.cfg = self.cfg.replace(precision=precision)
        self._cast(precision)
        return self

    @classmethod
    def from_config(cls, cfg: ModelConfig) -> SparrowModel:
        """Random tiny components, or the local component folders named by ``cfg`` (paper size)."""
        return cls(cfg)

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> SparrowModel:
        """Rebuild from a ``save_pretrained`` folder with strict weight loading (offline; original folders unused)."""
        return checkpoint.load_model(cls, directory)

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write ``config.json``, ``model.safetensors``, the tokenizer and the component configs, atomically."""
        return checkpoint.save_model(self, directory)

    def parameter_counts(self) -> dict[str, int]:
        """Parameters per top-level component (LoRA included where injected) and the trainable total."""
        return checkpoint.parameter_counts(self)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # -- stages ----------------------------------------------------------------------------------------------
    def configure_stage(self, stage: str, fold_lora: bool = False) -> SparrowModel:
        """Set ``requires_grad`` and the forward behaviour for ``stage``; ``fold_lora`` merges LoRA first."""
        stages.configure_stage(self, stage, fold_lora)
        return self

    def trainable_parameters(self, stage: str | None = None) -> list[nn.Parameter]:
        """The parameters that train in ``stage`` (default: the configured stage), in ``named_parameters`` order."""
        names = stages.trainable_names(self, stage or self.stage)
        return [p for n, p in self.named_parameters() if n in names]

    def merge_lora(self) -> int:
        """Fold every LoRA delta into its base weight and re-initialise the LoRA (a fresh adapter, same keys)."""
        return stages.merge_lora(self)

    # -- data ------------------------------------------------------------------------------------------------
    def frame_sizes(self) -> FrameSizes:
        return FrameSizes(
            spatial=self.spatial.image_size,
            spatial_kind=self.spatial.kind,
            sam=self.pixel_decoder.image_size,
            temporal=self.temporal.image_size if self.temporal is not None else None,
            temporal_kind=self.temporal.resize_kind if self.temporal is not None else "clip",
        )

    def collator(self, stage: str | None = None) -> SparrowCollator:
        """A collator for ``stage`` (default: the configured stage) with this model's tokenizer and input sizes."""
        return SparrowCollator(self.cfg, self.tokenizer, self.frame_sizes(), stage or self.stage)

    # -- encoders --------------------------------------------------------------------------------------------
    def _spatial_tokens(self, frames: torch.Tensor) -> torch.Tensor:
        trunk = self.spatial.trunk(self.llm.visual)
        with torch.set_grad_enabled(_grad_if_trainable(trunk)):
            return self.spatial(frames, visual=self.llm.visual)

    def visual_tokens(self, frames: torch.Tensor, temporal_frames: torch.Tensor | None) -> list[torch.Tensor]:
        """Per sample (N_vis, D) LLM tokens: context/frame tokens first, then temporal tokens (VideoGLaMM order)."""
        b, t = frames.shape[:2]
        ctx = self.image_adapter(self._spatial_tokens(frames.flatten(0, 1)))
        ctx = ctx.reshape(b, t * ctx.shape[1], ctx.shape[2])
        parts = [ctx]
        if self.temporal is not None:
            if temporal_frames is None:
                raise ValueError("the VideoGLaMM preset needs temporal_frames in the batch")
            tt = temporal_frames.shape[1]
            with torch.set_grad_enabled(_grad_if_trainable(self.temporal)):
                tokens = self.temporal(temporal_frames.flatten(0, 1))
            vid = self.video_adapter(tokens)
            parts.append(vid.reshape(b, tt * vid.shape[1], vid.shape[2]))
        return list(torch.cat(parts, dim=1).unbind(0))

    def encode_crops(self, crops: torch.Tensor) -> torch.Tensor:
        """TSF crop embeddings: crops (N, 3, S, S) in [0, 1] -> spatial encoder -> V->L adapter -> patch mean (N, D)."""
        if crops.dim() != 4 or crops.shape[1] != 3:
            raise ValueError(f"crops must be (N, 3, S, S), got {tuple(crops.shape)}")
        if crops.shape[0] == 0:
            return crops.new_zeros(0, self.llm.hidden_size)
        tokens = self._spatial_tokens(crops.to(device=self.device, dtype=torch.float32))
        return self.image_adapter.encode_mean(tokens)

    def tsf_tokens(self, crops: torch.Tensor | None) -> torch.Tensor | None:
        """K-means medoid TSF tokens (k', D) of one sample's crops, or None without crops."""
        if crops is None or crops.shape[0] == 0:
            return None
        return tsf_kmeans(self.encode_crops(crops), self.cfg.tsf_k, self.cfg.tsf_kmeans_iters).vectors

    def tsf_tokens_many(self, crops: list[torch.Tensor | None]) -> list[torch.Tensor | None]:
        """``tsf_tokens`` of several samples; a CLIP spatial encoder (frozen, no random draws) sees all their crops
        in one call, and the adapter (LoRA dropout in stage 1) then runs per sample in order, as ``tsf_tokens``."""
        present = [c for c in crops if c is not None and c.shape[0] > 0]
        if self.spatial.clip is None or len(present) < 2:
            return [self.tsf_tokens(c) for c in crops]
        tokens = self._spatial_tokens(torch.cat(present).to(device=self.device, dtype=torch.float32))
        parts = iter(tokens.split([c.shape[0] for c in present]))
        out = []
        for c in crops:
            if c is None or c.shape[0] == 0:
                out.append(None)
                continue
            embeddings = self.image_adapter.encode_mean(next(parts))
            out.append(tsf_kmeans(embeddings, self.cfg.tsf_k, self.cfg.tsf_kmeans_iters).vectors)
        return out

    def sam_features(self, frames: torch.Tensor, chunk: int | None = None) -> FrameFeatures:
        """SAM2 features of (T, 3, S, S) frames, encoded ``chunk`` frames at a time."""
        if chunk is None or frames.shape[0] <= chunk:
            return self.pixel_decoder.encode(frames)
        return FrameFeatures.cat(
            [self.pixel_decoder.encode(frames[i : i + chunk]) for i in range(0, frames.shape[0], chunk)]
        )

    # -- the mask branch -------------------------------------------------------------------------------------
    def frame_zero(self, feats: FrameFeatures, pixels: torch.Tensor, proposals: Proposals | None = None) -> FrameZero:
        """Frame 0 of the clip whose SAM2 features are ``feats`` (``pixels``: that frame, (3, S, S))."""
        return FrameZero(feats, pixels, self.proposer, self.pixel_decoder, self.roi_helper, proposals)

    def _guides(self, guidance: bool, has_seg: bool) -> bool:
        """Whether detection guidance picks the box prompts of a sample with these [SEG] tokens."""
        return guidance and has_seg and self.selector is not None

    def _select(
        self,
        frame0: FrameZero,
        seg_tokens: torch.Tensor,
        box_queries: torch.Tensor,
        out_hw: tuple[int, int],
        prior_filter: bool,
        targets: torch.Tensor | None = None,
    ) -> Prompt:
        """Detection guidance for one sample: proposals on frame 0 -> ProposalSelector (+ ROI helper) -> boxes.

        The [SEG] tokens are refined when no [BOX] was emitted; the boxes are None unless every token has one; the
        losses need ``targets`` (the sample's target masks)."""
        n = seg_tokens.shape[0]
        prop_loss = box_loss = None
        proposals = frame0.proposals
        queries = box_queries if box_queries.shape[0] > 0 else seg_tokens.mean(dim=1)
        refined, logits, _, pair_boxes = self.selector(queries, proposals.features, proposals.scores, proposals.valid)
        if self.roi_helper is not None:
            roi = self.roi_helper(
                queries, proposals.boxes, frame0.pyramid, self.pixel_decoder.image_size, frame0.roi_tokens
            )
            logits = logits + self.roi_fusion_gamma.clamp(0.0, 1.0).to(logits.dtype) * roi
        if box_queries.shape[0] == 0:
            # Without [BOX] the refined queries replace the [SEG] embeddings (released behaviour).
            seg_tokens = seg_tokens + (refined - queries).unsqueeze(1)
        selected = select_boxes(
            logits,
            proposals.boxes,
            proposals.valid,
            self.cfg.selector.score_threshold,
            self.cfg.selector.max_selected_per_token,
        )
        selected = align_to_tokens(selected, n)
        if prior_filter:
            selected = self._prior_filter(frame0.feats, selected, out_hw)
        if targets is not None and targets.shape[0] > 0:
            m = min(logits.shape[0], targets.shape[0])
            hot = proposal_targets(proposals.boxes, targets[:m], self.cfg.selector.proposal_iou_threshold)
            prop_loss = proposal_bce(logits[:m], hot, proposals.valid)
            if self.cfg.selector.box_regression:
                box_loss = proposal_box_loss(pair_boxes[:m], hot, targets[:m])
        boxes = selected if all(b.shape[0] > 0 for b in selected) else None
        return Prompt(seg_tokens, boxes, prop_loss, box_loss)

    def segment(
        self,
        feats: FrameFeatures,
        seg_tokens: torch.Tensor,
        box_queries: torch.Tensor,
        out_hw: tuple[int, int],
        frame0: FrameZero,
        guidance: bool,
        prior_filter: bool,
        state: MemoryState | None = None,
        fixed_boxes: list[torch.Tensor] | None = None,
        location: Locations = None,
    ) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        """Mask logits (n, T, H, W) on the frames of ``feats`` and the prompt boxes per token (or None).

        [SEG] states projected to ``seg_tokens`` (n, k, C) and [BOX] states to ``box_queries`` (m, C) -> selector
        on ``frame0`` (unless ``fixed_boxes`` are given) -> SAM2 mask decoder; ``state`` continues a memory mode;
        ``location`` (:meth:`locate_tokens`, the frames of ``feats``) adds the location channel's prompts."""
        prompt = Prompt(seg_tokens.float(), fixed_boxes)
        if fixed_boxes is None and self._guides(guidance, seg_tokens.shape[0] > 0):
            prompt = self._select(frame0, prompt.tokens, box_queries.float(), out_hw, prior_filter)
        mask_logits = self.pixel_decoder.decode(
            feats, prompt.tokens, prompt.boxes, out_hw, self.cfg.propagation, state, location
        )
        return mask_logits, prompt.boxes

    @torch.no_grad()
    def locate(self, sam_frames: torch.Tensor, text: str) -> Location | None:
        """The location channel of one clip (None without it): the dense grounding of ``text`` on ``sam_frames``
        (T, 3, S, S) in [0, 1], as a box per frame where the referent is found (docs/design.md §14)."""
        if self.grounding is None:
            return None
        spec = self.grounding.spec
        logits = self.grounding.ground(sam_frames, [text])[0]
        boxes, valid = location_boxes(logits, spec.threshold, spec.max_boxes)
        masks = None
        if spec.dense_prompt:
            size = tuple(self.pixel_decoder.sam.sam_prompt_encoder.mask_input_size)
            masks = F.interpolate(logits.unsqueeze(1).float(), size=size, mode="bilinear", align_corners=False)
        return Location(boxes, valid, masks)

    def locate_tokens(self, sam_frames: torch.Tensor, texts: Sequence[str], n: int) -> Locations:
        """The location channel of ``n`` [SEG] tokens on one clip, token i grounding ``texts[i]`` (the text it
        stands for, :func:`sparrow.model.conversation.seg_texts`; the last text for tokens beyond them): one
        :class:`Location` shared by every token when they all ground the same text, else one per token."""
        if self.grounding is None or n == 0 or not texts:
            return None
        wanted = (list(texts) + [texts[-1]] * n)[:n]
        found = {text: self.locate(sam_frames, text) for text in dict.fromkeys(wanted)}
        if len(found) == 1:
            return found[wanted[0]]
        return [found[text] for text in wanted]

    @torch.no_grad()
    def _prior_filter(
        self, feats: FrameFeatures, selected: list[torch.Tensor], out_hw: tuple[int, int]
    ) -> list[torch.Tensor]:
        s = self.cfg.selector
        out = []
        for boxes in selected:
            if boxes.shape[0] == 0:
                out.append(boxes)
                continue
            try:
                masks = self.pixel_decoder.prior_masks(feats, boxes, out_hw, s.box_prior_prompt)
            except RuntimeError as exc:
                warnings.warn(f"box prior filter skipped, SAM2 failed ({exc}); boxes kept unfiltered", stacklevel=2)
                out.append(boxes)
                continue
            out.append(filter_boxes(boxes, prior_scores(boxes, masks), s.box_prior_min_score, s.box_prior_max_keep))
        return out

    # -- training forward ------------------------------------------------------------------------------------
    def forward(self, batch: SparrowBatch) -> SparrowOutput:
        """Losses of one collated batch (the figure's arrows; the stage says which are on)."""
        if self.stage == "proposer":
            return self._proposer_forward(batch)
        behaviour = self._stage_behaviour(batch)
        batch = batch.to(self.device)
        visual = self.visual_tokens(batch.frames, batch.temporal_frames)  # encoders -> V->L adapters
        tsf = self.tsf_tokens_many(self._tsf_crops(batch, behaviour.tsf))  # target crops -> TSF tokens
        mm = self._llm_inputs(batch, visual, tsf)  # question + visual + TSF embeddings
        logits, hidden, _ = self.llm(mm.embeds, mm.attention_mask)  # LLM: answer logits, [SEG]/[BOX] states
        ce = causal_lm_loss(logits, mm.labels)
        feats = self.pixel_decoder.encode_samples(batch.sam_frames)  # SAM2 image encoder
        frame_zeros = self._frame_zeros(batch, feats, mm, behaviour.guidance)  # proposer on each guided frame 0
        prompts, masks = self._prompt_and_decode(batch, hidden, mm, feats, frame_zeros)  # L->V, selector, SAM2 decoder
        return self._output(ce, masks, prompts, batch.target_masks)

    def _stage_behaviour(self, batch: SparrowBatch) -> StageBehaviour:
        """What the configured stage turns on; ``batch`` must have been collated for it."""
        if batch.stage != self.stage:
            raise ValueError(
                f"batch collated for stage {batch.stage!r} but the model is configured for "
                f"{self.stage!r}; build the collator with model.collator()"
            )
        return stage_behaviour(self.cfg, self.stage)

    @staticmethod
    def _tsf_crops(batch: SparrowBatch, tsf: bool) -> list[torch.Tensor | None]:
        return batch.tsf_crops if (tsf and batch.tsf_crops is not None) else [None] * len(batch)

    def _llm_inputs(
        self, batch: SparrowBatch, visual: list[torch.Tensor], tsf: list[torch.Tensor | None]
    ) -> MultimodalInputs:
        return build_multimodal_inputs(
            batch.input_ids,
            batch.attention_mask,
            batch.labels,
            visual,
            tsf,
            self.llm.embed,
            self.seg_token_id,
            self.box_token_id,
            self.cfg.tsf_k,
            self.cfg.seg_hidden_at,
        )

    def _frame_zeros(
        self, batch: SparrowBatch, feats: FrameFeatures, mm: MultimodalInputs, guidance: bool
    ) -> list[FrameZero | None]:
        """Per sample its clip's frame 0 with its proposals, or None where guidance does not run; the proposals of
        every guided sample come from one proposer call (the proposer draws no random numbers)."""
        b, t = batch.sam_frames.shape[:2]
        guided = [i for i in range(b) if self._guides(guidance, bool(mm.seg_mask[i].any()))]
        if not guided:
            return [None] * b
        inputs = torch.cat(
            [proposer_input(self.proposer, self.pixel_decoder, feats, batch.sam_frames[i, 0], i * t) for i in guided]
        )
        proposals = dict(zip(guided, self.proposer.propose(inputs)))
        return [
            self.frame_zero(feats.frames(i * t, (i + 1) * t), batch.sam_frames[i, 0], proposals[i])
            if i in proposals
            else None
            for i in range(b)
        ]

    def _prompt_and_decode(
        self,
        batch: SparrowBatch,
        hidden: torch.Tensor,
        mm: MultimodalInputs,
        feats: FrameFeatures,
        frame_zeros: list[FrameZero | None],
    ) -> tuple[list[Prompt], list[torch.Tensor]]:
        """Every sample's SAM2 prompt and mask logits (n, T, H, W).

        Per sample and in this order, as the random draws of LoRA dropout (projector) and of SAM2's memory attention
        (memory modes) must follow the same sequence whatever the batching; framewise decoding, which draws
        nothing, then runs on every sample's frames and prompts together."""
        t = batch.sam_frames.shape[1]
        framewise = self.cfg.propagation == "framewise"
        prompts, masks, requests = [], [], []
        for i, frame0 in enumerate(frame_zeros):
            out_hw = (
                tuple(batch.target_masks[i].shape[-2:]) if batch.target_masks[i].dim() == 4 else batch.orig_sizes[i]
            )
            seg_states = hidden[i][mm.seg_mask[i]][: self.cfg.max_seg_tokens]
            box_states = hidden[i][mm.box_mask[i]][: self.cfg.max_seg_tokens]
            prompt = self._sample_prompt(seg_states, box_states, frame0, out_hw, batch.target_masks[i])
            prompts.append(prompt)
            location = None
            if batch.texts:
                texts = batch.seg_texts[i] if batch.seg_texts else [batch.texts[i]]
                location = self.locate_tokens(batch.sam_frames[i], texts, prompt.tokens.shape[0])
            if framewise:
                requests.append((i * t, (i + 1) * t, prompt.tokens, prompt.boxes, out_hw, location))
            else:
                masks.append(
                    self.pixel_decoder.decode(
                        feats.frames(i * t, (i + 1) * t),
                        prompt.tokens,
                        prompt.boxes,
                        out_hw,
                        self.cfg.propagation,
                        location=location,
                    )
                )
        if framewise:
            masks = self.pixel_decoder.decode_framewise_many(feats, requests)
        return prompts, masks

    def _sample_prompt(
        self,
        seg_states: torch.Tensor,
        box_states: torch.Tensor,
        frame0: FrameZero | None,
        out_hw: tuple[int, int],
        targets: torch.Tensor,
    ) -> Prompt:
        """One sample's [SEG]/[BOX] states -> L->V projector -> (selector, when ``frame0`` is given) -> prompt."""
        seg_tokens = self.lv_projector(seg_states).float()
        box_queries = self.lv_projector.query(box_states).float()
        if frame0 is None:
            return Prompt(seg_tokens)
        return self._select(frame0, seg_tokens, box_queries, out_hw, self.cfg.selector.box_prior_filter_train, targets)

    def _output(
        self, ce: torch.Tensor, masks: list[torch.Tensor], prompts: list[Prompt], targets: list[torch.Tensor]
    ) -> SparrowOutput:
        """The weighted losses: CE on the answer, BCE + Dice on the masks, proposal (and box) loss of the selector."""
        w = self.cfg.losses
        bce_sum, dice_sum, pairs = mask_losses(masks, targets)
        prop_losses = [p.prop_loss for p in prompts if p.prop_loss is not None]
        box_losses = [p.box_loss for p in prompts if p.box_loss is not None]
        zero = ce * 0.0
        losses = {
            "ce": w.ce * ce,
            "bce": w.bce * bce_sum / (pairs + 1e-8) if pairs else zero,
            "dice": w.dice * dice_sum / (pairs + 1e-8) if pairs else zero,
            "prop": w.prop * torch.stack(prop_losses).mean() if prop_losses else zero,
            "box": w.box * torch.stack(box_losses).mean() if box_losses else zero,
        }
        loss = sum(losses[k] for k in LOSS_KEYS)
        return SparrowOutput(
            loss=loss, losses=losses, mask_logits=masks, selected_boxes=[p.boxes or [] for p in prompts]
        )

    def _proposer_forward(self, batch: SparrowBatch) -> SparrowOutput:
        device = self.device
        frame0 = batch.sam_frames[:, 0].to(device)
        size = self.proposer.spec.image_size
        if self.proposer.owns_backbone:
            features = torch.cat([self.proposer.preprocess(f) for f in frame0])
        else:
            with torch.no_grad():
                feats = self.pixel_decoder.encode(frame0, image_size=size)
            features = torch.cat([self.pixel_decoder.top_level(feats, i) for i in range(frame0.shape[0])])
        out = self.proposer(features)
        det = self.proposer.detection_loss(out, [bx.to(device) for bx in batch.object_boxes])
        loss = det["det_cls"] + det["det_l1"] + det["det_giou"]
        zero = loss * 0.0
        losses = {k: zero for k in LOSS_KEYS}
        losses.update(det)
        return SparrowOutput(loss=loss, losses=losses)

    # -- inference (sparrow.model.inference) -----------------------------------------------------------------
    def predict(
        self,
        frames: np.ndarray,
        text: str,
        *,
        raw_question: bool = False,
        tsf_boxes=None,
        tsf_embeddings=None,
        max_new_tokens: int | None = None,
    ) -> Prediction:
        """Per-frame masks, boxes and the answer for a referring ``text`` on ``frames`` (T, H, W, 3) uint8.

        ``text`` is wrapped in the host's evaluation prompt (lower-cased), unless ``raw_question``. A video shorter
        than the encoder's frame sample is padded by repeating its last frame. No ``[SEG]`` in the answer gives empty
        masks and a warning.
        """
        return inference.predict(
            self,
            frames,
            text,
            raw_question=raw_question,
            tsf_boxes=tsf_boxes,
            tsf_embeddings=tsf_embeddings,
            max_new_tokens=max_new_tokens,
        )

    def predict_many(
        self,
        frames: np.ndarray,
        texts: Sequence[str],
        *,
        tsf_boxes: Sequence | None = None,
        raw_question: bool = False,
        max_new_tokens: int | None = None,
    ) -> list[Prediction]:
        """``predict`` for several texts on the same video, sharing all per-video work.

        Frame conversion and resizing, the spatial/temporal encoder tokens (per GLUS question window), the SAM2
        image features and the proposer's frame-0 proposals are computed once; each text then runs only its own
        steps (TSF tokens, generation, selection, mask decoding), exactly as ``predict`` runs them, so prediction
        ``i`` equals ``predict(frames, texts[i], tsf_boxes=tsf_boxes[i], ...)``. ``tsf_boxes``: None, or one entry
        per text (an entry may be None)."""
        return inference.predict_many(
            self, frames, texts, tsf_boxes=tsf_boxes, raw_question=raw_question, max_new_tokens=max_new_tokens
        )

    def extra_repr(self) -> str:
        return json.dumps(
            {
                "host": self.cfg.host,
                "profile": self.cfg.profile,
                "stage": self.stage,
                "tsf": self.cfg.tsf,
                "box": self.cfg.box,
                "tsf_at_test": self.cfg.tsf_at_test,
            }
        )
