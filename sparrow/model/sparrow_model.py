"""SparrowModel: the host MLLM with TSF tokens and the dual ``[BOX]``/``[SEG]`` prompt (the paper's figure, assembled).

Data flow (docs/design.md §1): frames -> spatial (+ temporal) encoder -> V->L adapters -> visual tokens; question
+ ``<tsf>`` TSF tokens -> LLM -> ``[BOX] [SEG]``; last-layer states at ``[BOX]``/``[SEG]`` -> shared L->V projector;
frame 0 -> class-agnostic proposer -> ProposalSelector + ROI helper (from the ``[BOX]`` query) -> selected boxes ->
(box prior filter at inference) -> SAM2 decoder prompted with box corners + ``[SEG]`` tokens on every SAM frame.

Training stages (``configure_stage``; docs/design.md §10):

- ``host``: the host model's own recipe (no TSF, no ``[BOX]``): LoRA on the LLM's q/v projections plus full training
  of ``lm_head``, ``embed_tokens``, the L->V projector, the V->L adapters and the SAM2 mask decoder (VideoGLaMM's
  ``train_ds`` defaults; ``host_trainable_sam`` / ``host_train_adapters`` change the last two). The paper starts
  from released host checkpoints; the kit trains its own baseline with this stage.
- ``proposer``: class-agnostic proposer pretraining on SAM2 frame-0 features (only the proposer trains).
- ``stage1``: TSF injection: LoRA r=8, alpha=16, dropout 0.05 on the LLM's q/v matches and on every Linear of the
  V->L adapters and the L->V projector; nothing else trains (``lm_head`` and ``embed_tokens`` stay frozen, so the
  ``[BOX]`` row keeps its resize initialisation, as in the released code).
- ``stage2``: LoRA on the LLM and the L->V projector, plus the ProposalSelector, the ROI helper and ``gamma``;
  detection guidance on, TSF off, proposal loss on.

LoRA layers (peft) are injected once at construction on the union of those targets, so every stage has the same
state_dict keys. Moving from one stage to the next on the previous stage's weights (the released pipeline exports
merged weights and starts a fresh LoRA) is ``merge_lora()``, or ``configure_stage(stage, fold_lora=True)``; a resumed
run of the same stage must not fold.

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

Inference: ``predict(frames, text)`` for one text; ``predict_many(frames, texts)`` for all the texts of a video,
which computes the per-video part once (SAM2 features, encoder tokens, frame-0 proposals and their ROI tokens) and
runs the same per-text steps as ``predict``, so its predictions equal ``predict``'s. The ``[SEG]``/``[BOX]`` hidden
states are the ones greedy decoding computed (not a second LLM pass over prompt + answer).

Training forward: samples are batched where a module draws no random numbers (SAM2 encoder and mask decoder,
proposer, the CLIP tower on TSF crops); modules with LoRA dropout and SAM2's memory attention run per sample in the
original order, so the random stream of a step is the one of the unbatched code.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch import nn

from sparrow.model.batch import LOSS_KEYS, Prediction, SparrowBatch, SparrowOutput
from sparrow.model.box_prior_filter import filter_boxes, prior_scores
from sparrow.model.checkpoint import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    CheckpointError,
    atomic_directory,
    load_state_strict,
    save_state,
)
from sparrow.model.collator import FrameSizes, SparrowCollator
from sparrow.model.config import MODEL_STAGES, ModelConfig, stage_behaviour
from sparrow.model.conversation import CHAT_TEMPLATES, tokenize_conversation
from sparrow.model.frames import encoder_frames, linspace_indices, segment_centres, stretch, to_float
from sparrow.model.llm import LanguageModel, torch_dtype
from sparrow.model.losses import (
    causal_lm_loss,
    mask_losses,
    proposal_bce,
    proposal_box_loss,
    proposal_targets,
)
from sparrow.model.lv_projector import LVProjector
from sparrow.model.multimodal_inputs import build_multimodal_inputs, expand_sample, token_marks
from sparrow.model.pixel_decoder import FrameFeatures, MemoryState, PixelDecoder, build_sam
from sparrow.model.proposal_selector import ProposalSelector, align_to_tokens, select_boxes
from sparrow.model.proposer import ClassAgnosticProposer
from sparrow.model.roi_helper import ROIProposalHelper
from sparrow.model.spatial_encoder import SpatialEncoder
from sparrow.model.temporal_encoder import TemporalEncoder
from sparrow.model.tokens import token_id
from sparrow.model.tsf_tokens import box_crops, kmeans_select_representatives
from sparrow.model.vl_adapter import VLAdapter

SAM_CHUNK = 16  # frames encoded per SAM2 call at inference


def _grad_if_trainable(module: nn.Module | None) -> bool:
    return torch.is_grad_enabled() and module is not None and any(p.requires_grad for p in module.parameters())


class SparrowModel(nn.Module):
    """Build with :meth:`from_config` or :meth:`from_pretrained`."""

    def __init__(self, cfg: ModelConfig, checkpoint_dir: Path | None = None):
        super().__init__()
        self.cfg = cfg
        comp = checkpoint_dir / "components" if checkpoint_dir is not None else None
        # LLM and tokenizer
        if comp is not None:
            from transformers import AutoTokenizer

            self.llm = LanguageModel.from_saved_config(comp / "llm", cfg.hidden_state, cfg.llm.dtype)
            self.tokenizer = AutoTokenizer.from_pretrained(checkpoint_dir / "tokenizer", local_files_only=True)
        else:
            self.llm, self.tokenizer = LanguageModel.build(cfg.llm, cfg.vision, cfg.resolve(cfg.llm.path),
                                                           cfg.hidden_state)
        self.seg_token_id = token_id(self.tokenizer, "[SEG]")
        self.box_token_id = token_id(self.tokenizer, "[BOX]")
        d_llm = self.llm.hidden_size
        # spatial and temporal encoders
        if cfg.vision.kind == "qwen2_5_vl":
            self.spatial = SpatialEncoder.build(cfg.vision, None, visual=self.llm.visual)
        elif comp is not None:
            self.spatial = SpatialEncoder.from_saved_config(comp / "vision", cfg.vision.select_layer)
        else:
            self.spatial = SpatialEncoder.build(cfg.vision, cfg.resolve(cfg.vision.path))
        self.temporal: TemporalEncoder | None = None
        if cfg.temporal is not None:
            self.temporal = (TemporalEncoder.from_saved_config(comp / "temporal") if comp is not None
                             else TemporalEncoder.build(cfg.temporal, cfg.resolve(cfg.temporal.path)))
        a = cfg.adapter
        self.image_adapter = VLAdapter(a.image_projector, self.spatial.output_dim, d_llm, a.context_pool_stride,
                                       a.token_pool_1d, a.pool_before_projection)
        self.video_adapter: VLAdapter | None = None
        if self.temporal is not None:
            self.video_adapter = VLAdapter(a.video_projector or "mlp2x_gelu", self.temporal.output_dim, d_llm,
                                           a.video_pool_stride)
        # SAM2 pixel decoder
        self._sam_yaml = self._local_sam_yaml(cfg, comp)
        sam_ckpt = None if comp is not None else cfg.resolve(cfg.sam.checkpoint)
        self.pixel_decoder = PixelDecoder(build_sam(cfg.sam, self._sam_yaml, sam_ckpt), cfg.sam.object_score_gating)
        sam_dim = self.pixel_decoder.hidden_dim
        self.lv_projector = LVProjector(cfg.lv_projector, d_llm, sam_dim, cfg.seg_tokens_per_target)
        # dual prompt
        self.proposer: ClassAgnosticProposer | None = None
        self.selector: ProposalSelector | None = None
        self.roi_helper: ROIProposalHelper | None = None
        self.roi_fusion_gamma: nn.Parameter | None = None
        if cfg.box:
            self.proposer = self._build_proposer(cfg, comp, sam_dim)
            self.selector = ProposalSelector(sam_dim, self.proposer.spec.d_model, cfg.selector.hidden_dim)
            if cfg.selector.roi_helper:
                self.roi_helper = ROIProposalHelper(sam_dim, cfg.selector.roi_hidden_dim or sam_dim,
                                                    cfg.selector.roi_size, self.pixel_decoder.level_channels)
            self.roi_fusion_gamma = nn.Parameter(torch.tensor(float(cfg.selector.roi_fusion_init)))
        self._inject_lora()
        # The LLM side runs in the configured dtype (bf16 at paper size); SAM2 and the box modules stay float32
        # (sam2 itself relies on autocast for lower precision, and they are small next to the LLM).
        dtype = torch_dtype(cfg.llm.dtype)
        for part in (self.llm, self.spatial, self.temporal, self.image_adapter, self.video_adapter, self.lv_projector):
            if part is not None:
                part.to(dtype)
        self.stage = "stage1"
        self.configure_stage("stage1")

    # -- construction ----------------------------------------------------------------------------------------
    @classmethod
    def from_config(cls, cfg: ModelConfig) -> "SparrowModel":
        """Random tiny components, or the local component folders named by ``cfg`` (paper size)."""
        return cls(cfg)

    @staticmethod
    def _local_sam_yaml(cfg: ModelConfig, comp: Path | None) -> Path | None:
        if comp is not None:
            saved = comp / "sam2.yaml"
            return saved if saved.is_file() else None
        if cfg.sam.config.startswith("configs/"):
            return None  # one of the sam2 package's own hydra configs
        return cfg.resolve(cfg.sam.config)

    @staticmethod
    def _build_proposer(cfg: ModelConfig, comp: Path | None, sam_dim: int) -> ClassAgnosticProposer:
        if comp is not None:
            from sparrow.storage import read_json

            spec, in_channels = ClassAgnosticProposer.spec_from_json(read_json(comp / "proposer.json"))
            return ClassAgnosticProposer(spec, in_channels)
        if cfg.proposer.path is not None:
            proposer = ClassAgnosticProposer.from_pretrained(cfg.resolve(cfg.proposer.path))
            if proposer.in_channels != sam_dim:
                raise ValueError(f"proposer at {cfg.proposer.path} expects {proposer.in_channels}-channel SAM2 "
                                 f"features, the pixel decoder gives {sam_dim}")
            return proposer
        return ClassAgnosticProposer(cfg.proposer, sam_dim)

    def _adapter_linear_names(self) -> list[str]:
        names = []
        for name, module in self.named_modules():
            if not isinstance(module, nn.Linear):
                continue
            if name.startswith(("image_adapter.", "video_adapter.", "lv_projector.")) or ".visual.merger." in name:
                names.append(name)
        return names

    def _inject_lora(self) -> None:
        from peft import LoraConfig, inject_adapter_in_model

        lora = self.cfg.lora
        targets = ["llm.model." + n for n in self.llm.lora_target_names(lora.llm_targets, lora.exclude)]
        targets += self._adapter_linear_names()
        config = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, bias="none",
                            target_modules=targets)
        inject_adapter_in_model(config, self)

    # -- stages ----------------------------------------------------------------------------------------------
    def _names_by_group(self) -> dict[str, set[str]]:
        names = [n for n, _ in self.named_parameters()]
        lora = {n for n in names if ".lora_" in n}
        by_id = {id(p): n for n, p in self.named_parameters()}
        embeddings = {by_id[id(p)] for m in (self.llm.input_embeddings(), self.llm.output_embeddings())
                      if m is not None for p in m.parameters() if id(p) in by_id}
        adapters = {n for n in names if n.startswith(("image_adapter.", "video_adapter.")) or ".visual.merger." in n}
        return {
            "llm_lora": {n for n in lora if n.startswith("llm.") and ".visual." not in n},
            "adapter_lora": adapters & lora,
            "adapter_base": adapters - lora,
            "lv_lora": {n for n in lora if n.startswith("lv_projector.")},
            "lv_base": {n for n in names if n.startswith("lv_projector.")} - lora,
            "embeddings": embeddings,
            "mask_decoder": {n for n in names if n.startswith("pixel_decoder.sam.sam_mask_decoder.")},
            "sam": {n for n in names if n.startswith("pixel_decoder.sam.")},
            "proposer": {n for n in names if n.startswith("proposer.")},
            "selection": {n for n in names if n.startswith(("selector.", "roi_helper.")) or n == "roi_fusion_gamma"},
        }

    def _trainable_names(self, stage: str) -> set[str]:
        if stage not in MODEL_STAGES:
            raise ValueError(f"unknown stage {stage!r}; choose one of {', '.join(MODEL_STAGES)}")
        g = self._names_by_group()
        if stage == "host":
            names = g["llm_lora"] | g["embeddings"] | g["lv_base"]
            if self.cfg.host_train_adapters:
                names |= g["adapter_base"]
            if self.cfg.host_trainable_sam == "mask_decoder":
                names |= g["mask_decoder"]
            elif self.cfg.host_trainable_sam == "all":
                names |= g["sam"]
            return names
        if stage == "proposer":
            if self.proposer is None:
                raise ValueError("the proposer stage needs a model built with box=True")
            return g["proposer"]
        if stage == "stage1":
            return g["llm_lora"] | g["adapter_lora"] | g["lv_lora"]
        return g["llm_lora"] | g["lv_lora"] | g["selection"]

    def trainable_parameters(self, stage: str | None = None) -> list[nn.Parameter]:
        """The parameters that train in ``stage`` (default: the configured stage), in ``named_parameters`` order."""
        names = self._trainable_names(stage or self.stage)
        return [p for n, p in self.named_parameters() if n in names]

    def configure_stage(self, stage: str, fold_lora: bool = False) -> "SparrowModel":
        """Set ``requires_grad`` and the forward behaviour for ``stage``; ``fold_lora`` merges LoRA first."""
        names = self._trainable_names(stage)
        if fold_lora:
            self.merge_lora()
        for n, p in self.named_parameters():
            p.requires_grad_(n in names)
        self.stage = stage
        return self

    @torch.no_grad()
    def merge_lora(self) -> int:
        """Fold every LoRA delta into its base weight and re-initialise the LoRA (a fresh adapter, same keys)."""
        from peft.tuners.lora import LoraLayer

        count = 0
        for module in self.modules():
            if isinstance(module, LoraLayer):
                for adapter in list(module.lora_A.keys()):
                    base = module.get_base_layer()
                    base.weight.data += module.get_delta_weight(adapter).to(base.weight.dtype)
                    module.reset_lora_parameters(adapter, init_lora_weights=True)
                    count += 1
        return count

    # -- data ------------------------------------------------------------------------------------------------
    def frame_sizes(self) -> FrameSizes:
        return FrameSizes(spatial=self.spatial.image_size, spatial_kind=self.spatial.kind,
                          sam=self.pixel_decoder.image_size,
                          temporal=self.temporal.image_size if self.temporal is not None else None)

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
        device = next(self.parameters()).device
        tokens = self._spatial_tokens(crops.to(device=device, dtype=torch.float32))
        return self.image_adapter.encode_mean(tokens)

    def tsf_tokens(self, crops: torch.Tensor | None) -> torch.Tensor | None:
        """K-means medoid TSF tokens (k', D) of one sample's crops, or None without crops."""
        if crops is None or crops.shape[0] == 0:
            return None
        embeddings = self.encode_crops(crops)
        index = kmeans_select_representatives(embeddings, self.cfg.tsf_k, self.cfg.tsf_kmeans_iters)
        return embeddings[index]

    def tsf_tokens_many(self, crops: list[torch.Tensor | None]) -> list[torch.Tensor | None]:
        """``tsf_tokens`` of several samples; a CLIP spatial encoder (frozen, no random draws) sees all their crops
        in one call, and the adapter (LoRA dropout in stage 1) then runs per sample in order, as ``tsf_tokens``."""
        present = [c for c in crops if c is not None and c.shape[0] > 0]
        if self.spatial.clip is None or len(present) < 2:
            return [self.tsf_tokens(c) for c in crops]
        device = next(self.parameters()).device
        tokens = self._spatial_tokens(torch.cat(present).to(device=device, dtype=torch.float32))
        parts = iter(tokens.split([c.shape[0] for c in present]))
        out = []
        for c in crops:
            if c is None or c.shape[0] == 0:
                out.append(None)
                continue
            embeddings = self.image_adapter.encode_mean(next(parts))
            out.append(embeddings[kmeans_select_representatives(embeddings, self.cfg.tsf_k, self.cfg.tsf_kmeans_iters)])
        return out

    def sam_features(self, frames: torch.Tensor, chunk: int | None = None) -> FrameFeatures:
        """SAM2 features of (T, 3, S, S) frames, encoded ``chunk`` frames at a time."""
        if chunk is None or frames.shape[0] <= chunk:
            return self.pixel_decoder.encode(frames)
        return FrameFeatures.cat([self.pixel_decoder.encode(frames[i:i + chunk])
                                  for i in range(0, frames.shape[0], chunk)])

    # -- the mask branch -------------------------------------------------------------------------------------
    def _proposer_input(self, feats: FrameFeatures, frame0: torch.Tensor, t: int = 0) -> torch.Tensor:
        """(1, C, h, w) proposer input for the frame ``t`` of ``feats`` (``frame0``: its pixels, for a re-encode)."""
        size = self.proposer.spec.image_size
        if size is None or size == self.pixel_decoder.image_size:
            return self.pixel_decoder.top_level(feats, t)
        with torch.no_grad():
            alt = self.pixel_decoder.encode(frame0.unsqueeze(0), image_size=size)
        return self.pixel_decoder.top_level(alt, 0)

    def _select(self, feats: FrameFeatures, seg_tokens: torch.Tensor, box_queries: torch.Tensor, proposals,
                out_hw: tuple[int, int], prior_filter: bool, targets: torch.Tensor | None = None,
                roi_tokens=None):
        """Detection guidance for one sample whose frame 0 is ``feats``' first frame.

        Returns the [SEG] tokens (refined when no [BOX] was emitted), the selected boxes per token (None unless
        every token has one), and the proposal and box losses (or None). ``roi_tokens``: a function giving the ROI
        helper's query-independent proposal tokens for these proposals (inference shares them across texts)."""
        n = seg_tokens.shape[0]
        prop_loss = box_loss = None
        queries = box_queries if box_queries.shape[0] > 0 else seg_tokens.mean(dim=1)
        refined, logits, _, pair_boxes = self.selector(queries, proposals.features, proposals.scores,
                                                       proposals.valid)
        if self.roi_helper is not None:
            roi = self.roi_helper(queries, proposals.boxes, self.pixel_decoder.roi_pyramid(feats, 0),
                                  self.pixel_decoder.image_size, None if roi_tokens is None else roi_tokens())
            logits = logits + self.roi_fusion_gamma.clamp(0.0, 1.0).to(logits.dtype) * roi
        if box_queries.shape[0] == 0:
            # Without [BOX] the refined queries replace the [SEG] embeddings (released behaviour).
            seg_tokens = seg_tokens + (refined - queries).unsqueeze(1)
        selected = select_boxes(logits, proposals.boxes, proposals.valid, self.cfg.selector.score_threshold,
                                self.cfg.selector.max_selected_per_token)
        selected = align_to_tokens(selected, n)
        if prior_filter:
            selected = self._prior_filter(feats, selected, out_hw)
        if targets is not None and targets.shape[0] > 0:
            m = min(logits.shape[0], targets.shape[0])
            hot = proposal_targets(proposals.boxes, targets[:m], self.cfg.selector.proposal_iou_threshold)
            prop_loss = proposal_bce(logits[:m], hot, proposals.valid)
            if self.cfg.selector.box_regression:
                box_loss = proposal_box_loss(pair_boxes[:m], hot, targets[:m])
        boxes = selected if all(b.shape[0] > 0 for b in selected) else None
        return seg_tokens, boxes, prop_loss, box_loss

    def _segment(self, feats: FrameFeatures, seg_tokens: torch.Tensor, box_queries: torch.Tensor,
                 out_hw: tuple[int, int], frame0: torch.Tensor, guidance: bool, prior_filter: bool,
                 targets: torch.Tensor | None = None, state: MemoryState | None = None,
                 fixed_boxes: list[torch.Tensor] | None = None, proposals=None, roi_tokens=None):
        """Mask logits (n, T, H, W), the prompt boxes per token, and the proposal and box losses (or None).

        ``proposals``: the proposer's output on ``feats``' first frame when the caller already has it, or a
        function returning it (called only if guidance needs it)."""
        n = seg_tokens.shape[0]
        seg_tokens, box_queries = seg_tokens.float(), box_queries.float()
        boxes = fixed_boxes
        prop_loss = box_loss = None
        if guidance and n > 0 and self.selector is not None and boxes is None:
            if proposals is None:
                proposals = self.proposer.propose(self._proposer_input(feats, frame0))[0]
            elif callable(proposals):
                proposals = proposals()
            seg_tokens, boxes, prop_loss, box_loss = self._select(feats, seg_tokens, box_queries, proposals, out_hw,
                                                                  prior_filter, targets, roi_tokens)
        mask_logits = self.pixel_decoder.decode(feats, seg_tokens, boxes, out_hw, self.cfg.propagation, state)
        return mask_logits, boxes, prop_loss, box_loss

    @torch.no_grad()
    def _prior_filter(self, feats: FrameFeatures, selected: list[torch.Tensor],
                      out_hw: tuple[int, int]) -> list[torch.Tensor]:
        s = self.cfg.selector
        out = []
        for boxes in selected:
            if boxes.shape[0] == 0:
                out.append(boxes)
                continue
            try:
                masks = self.pixel_decoder.box_masks(feats, boxes, out_hw) > 0
            except RuntimeError as exc:
                warnings.warn(f"box prior filter skipped, SAM2 failed ({exc}); boxes kept unfiltered", stacklevel=2)
                out.append(boxes)
                continue
            out.append(filter_boxes(boxes, prior_scores(boxes, masks), s.box_prior_min_score, s.box_prior_max_keep))
        return out

    # -- training forward ------------------------------------------------------------------------------------
    def forward(self, batch: SparrowBatch) -> SparrowOutput:
        if self.stage == "proposer":
            return self._proposer_forward(batch)
        if batch.stage != self.stage:
            raise ValueError(f"batch collated for stage {batch.stage!r} but the model is configured for "
                             f"{self.stage!r}; build the collator with model.collator()")
        cfg, w = self.cfg, self.cfg.losses
        behaviour = stage_behaviour(cfg, self.stage)
        device = next(self.parameters()).device
        batch = batch.to(device)
        visual = self.visual_tokens(batch.frames, batch.temporal_frames)
        crops = batch.tsf_crops if (behaviour.tsf and batch.tsf_crops is not None) else [None] * len(batch)
        tsf = self.tsf_tokens_many(crops)
        mm = build_multimodal_inputs(batch.input_ids, batch.attention_mask, batch.labels, visual, tsf,
                                     self.llm.embed, self.seg_token_id, self.box_token_id, cfg.tsf_k,
                                     cfg.seg_hidden_at)
        logits, hidden, _ = self.llm(mm.embeds, mm.attention_mask)
        ce = causal_lm_loss(logits, mm.labels)
        b, t_sam = batch.sam_frames.shape[:2]
        feats = self.pixel_decoder.encode_samples(batch.sam_frames)
        out_hw = [tuple(t.shape[-2:]) if t.dim() == 4 else batch.orig_sizes[i]
                  for i, t in enumerate(batch.target_masks)]
        guided = [i for i in range(b) if behaviour.guidance and self.selector is not None and mm.seg_mask[i].any()]
        proposals = {}
        if guided:
            # One proposer call for the frame 0 of every guided sample (the proposer draws no random numbers).
            inputs = torch.cat([self._proposer_input(feats, batch.sam_frames[i, 0], i * t_sam) for i in guided])
            proposals = dict(zip(guided, self.proposer.propose(inputs)))
        framewise = cfg.propagation == "framewise"
        requests, preds, selected_all, prop_losses, box_losses = [], [], [], [], []
        for i in range(b):
            # Per sample and in this order, as the random draws of LoRA dropout (projector) and of SAM2's memory
            # attention (memory modes) must follow the same sequence whatever the batching below.
            seg_h = hidden[i][mm.seg_mask[i]][: cfg.max_seg_tokens]
            box_h = hidden[i][mm.box_mask[i]][: cfg.max_seg_tokens]
            tok, box_q, sel = self.lv_projector(seg_h).float(), self.lv_projector.query(box_h).float(), None
            frames = feats.frames(i * t_sam, (i + 1) * t_sam)
            if i in proposals:
                tok, sel, prop, box = self._select(frames, tok, box_q, proposals[i], out_hw[i],
                                                   cfg.selector.box_prior_filter_train, batch.target_masks[i])
                if prop is not None:
                    prop_losses.append(prop)
                if box is not None:
                    box_losses.append(box)
            selected_all.append(sel or [])
            if framewise:
                requests.append((i * t_sam, (i + 1) * t_sam, tok, sel, out_hw[i]))
            else:
                preds.append(self.pixel_decoder.decode(frames, tok, sel, out_hw[i], cfg.propagation))
        if framewise:
            # Frames are independent (and the decoder draws nothing): every sample's frames and prompts together.
            preds = self.pixel_decoder.decode_framewise_many(feats, requests)
        bce_sum, dice_sum, pairs = mask_losses(preds, batch.target_masks)
        zero = ce * 0.0
        losses = {
            "ce": w.ce * ce,
            "bce": w.bce * bce_sum / (pairs + 1e-8) if pairs else zero,
            "dice": w.dice * dice_sum / (pairs + 1e-8) if pairs else zero,
            "prop": w.prop * torch.stack(prop_losses).mean() if prop_losses else zero,
            "box": w.box * torch.stack(box_losses).mean() if box_losses else zero,
        }
        loss = sum(losses[k] for k in LOSS_KEYS)
        return SparrowOutput(loss=loss, losses=losses, mask_logits=preds, selected_boxes=selected_all)

    def _proposer_forward(self, batch: SparrowBatch) -> SparrowOutput:
        device = next(self.parameters()).device
        frame0 = batch.sam_frames[:, 0].to(device)
        size = self.proposer.spec.image_size
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

    # -- inference -------------------------------------------------------------------------------------------
    def _stop_ids(self) -> set[int]:
        stops = set()
        if self.tokenizer.eos_token_id is not None:
            stops.add(int(self.tokenizer.eos_token_id))
        suffix = CHAT_TEMPLATES[self.cfg.chat_template].assistant_suffix.strip()
        ids = self.tokenizer.encode(suffix, add_special_tokens=False) if suffix else []
        if len(ids) == 1:
            stops.add(int(ids[0]))
        return stops

    def _answer(self, visual: torch.Tensor, question: str, tsf: torch.Tensor | None, num_tsf: int,
                max_new_tokens: int):
        """Greedy answer for one sample on its visual tokens (N_vis, D): (text, [SEG] hidden states (n, d),
        [BOX] hidden states (m, d)).

        The hidden states are the ones the greedy decoding computed (the KV-cache steps see the same causal context
        as one forward over prompt + answer), so the answer is not run through the LLM a second time."""
        template = CHAT_TEMPLATES[self.cfg.chat_template]
        turn = tokenize_conversation(self.tokenizer, template, question, None, num_tsf)
        device = visual.device
        prompt = torch.tensor(turn.input_ids, dtype=torch.long, device=device)
        embeds, _, _, _ = expand_sample(prompt, None, visual, tsf, self.llm.embed, self.seg_token_id,
                                        self.box_token_id, self.cfg.tsf_k, self.cfg.seg_hidden_at)
        stops = self._stop_ids()
        generated, states = self.llm.generate(embeds.unsqueeze(0), max_new_tokens, stops)
        text_ids = [i for i in generated if i not in stops]
        answer = self.tokenizer.decode(text_ids, skip_special_tokens=False).strip()
        # Row r of ``states`` is the position of tail[r]: the last prompt token, then every fed answer token.
        tail = torch.tensor([int(prompt[-1])] + list(generated), dtype=torch.long, device=device)
        rows = states.shape[0]
        seg_rows = token_marks(tail, self.seg_token_id, self.cfg.seg_hidden_at)[:rows]
        box_rows = token_marks(tail, self.box_token_id, self.cfg.seg_hidden_at)[:rows]
        return answer, states[seg_rows][: self.cfg.max_seg_tokens], states[box_rows][: self.cfg.max_seg_tokens]

    def _tsf_for_inference(self, video: torch.Tensor, tsf_boxes, tsf_embeddings) -> torch.Tensor | None:
        if tsf_embeddings is not None:
            emb = torch.as_tensor(tsf_embeddings, dtype=torch.float32, device=video.device)
            if emb.dim() != 2 or emb.shape[1] != self.llm.hidden_size:
                raise ValueError(f"tsf_embeddings must be (k, {self.llm.hidden_size}), got {tuple(emb.shape)}")
            return emb
        if tsf_boxes is not None:
            crops = box_crops(video, np.asarray(tsf_boxes), self.spatial.image_size, self.cfg.num_frames)
            return self.tsf_tokens(crops)
        warnings.warn("tsf_at_test is on but no tsf_boxes or tsf_embeddings were given; the <tsf> placeholders "
                      "become zero vectors (released rule)", stacklevel=3)
        return None

    @staticmethod
    def _check_frames(frames) -> np.ndarray:
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
            raise ValueError(f"frames must be a non-empty (T, H, W, 3) array, got shape {frames.shape}")
        if frames.dtype != np.uint8:
            raise ValueError(f"frames must be uint8, got {frames.dtype}")
        return frames

    @torch.no_grad()
    def predict(self, frames: np.ndarray, text: str, *, raw_question: bool = False, tsf_boxes=None,
                tsf_embeddings=None, max_new_tokens: int | None = None) -> Prediction:
        """Per-frame masks, boxes and the answer for a referring ``text`` on ``frames`` (T, H, W, 3) uint8.

        ``text`` is wrapped in the host's evaluation prompt (lower-cased), unless ``raw_question``. A video shorter
        than the encoder's frame sample is padded by repeating its last frame. No ``[SEG]`` in the answer gives empty
        masks and a warning.
        """
        frames = self._check_frames(frames)
        with self._inference_mode():
            video = _VideoContext(self, frames)
            return self._predict_text(video, text, raw_question, tsf_boxes, tsf_embeddings,
                                      max_new_tokens or self.cfg.max_new_tokens)

    @torch.no_grad()
    def predict_many(self, frames: np.ndarray, texts: Sequence[str], *, tsf_boxes: Sequence | None = None,
                     raw_question: bool = False, max_new_tokens: int | None = None) -> list[Prediction]:
        """``predict`` for several texts on the same video, sharing all per-video work.

        Frame conversion and resizing, the spatial/temporal encoder tokens (per GLUS question window), the SAM2
        image features and the proposer's frame-0 proposals are computed once; each text then runs only its own
        steps (TSF tokens, generation, selection, mask decoding), exactly as ``predict`` runs them, so prediction
        ``i`` equals ``predict(frames, texts[i], tsf_boxes=tsf_boxes[i], ...)``. ``tsf_boxes``: None, or one entry
        per text (an entry may be None)."""
        frames = self._check_frames(frames)
        texts = [texts] if isinstance(texts, str) else list(texts)
        boxes = [None] * len(texts) if tsf_boxes is None else list(tsf_boxes)
        if len(boxes) != len(texts):
            raise ValueError(f"tsf_boxes has {len(boxes)} entries for {len(texts)} texts")
        if not texts:
            return []
        with self._inference_mode():
            video = _VideoContext(self, frames)
            return [self._predict_text(video, text, raw_question, box, None, max_new_tokens or self.cfg.max_new_tokens)
                    for text, box in zip(texts, boxes)]

    @contextmanager
    def _inference_mode(self):
        # Switching modes walks every submodule, which costs more than a small model's answer: only when needed.
        was_training = self.training
        if was_training:
            self.eval()
        try:
            yield
        finally:
            if was_training:
                self.train()

    def _predict_text(self, video: "_VideoContext", text, raw_question, tsf_boxes, tsf_embeddings,
                      max_new_tokens) -> Prediction:
        cfg = self.cfg
        behaviour = stage_behaviour(cfg, "inference")
        t, h, w = video.shape
        question = text if raw_question else cfg.eval_prompt.format(phrase=text.strip().lower().rstrip("."))
        num_tsf = cfg.num_tsf_placeholders if behaviour.tsf else 0
        tsf = self._tsf_for_inference(video.video, tsf_boxes, tsf_embeddings) if num_tsf else None
        if cfg.llm_sees_sam_frames:
            logits, answer, boxes = self._predict_windows(video, question, tsf, num_tsf, max_new_tokens, behaviour)
        else:
            answer, seg_h, box_h = self._answer(video.visual(), question, tsf, num_tsf, max_new_tokens)
            logits, boxes = None, None
            if seg_h.shape[0] > 0:
                logits, boxes, _, _ = self._segment(
                    video.feats, self.lv_projector(seg_h), self.lv_projector.query(box_h), (h, w),
                    video.sam_frames[0], guidance=behaviour.guidance, prior_filter=cfg.selector.box_prior_filter_test,
                    proposals=video.proposals, roi_tokens=video.roi_tokens)
        return self._prediction(logits, boxes, answer, text, (t, h, w))

    def _predict_windows(self, video: "_VideoContext", question, tsf, num_tsf, max_new_tokens, behaviour):
        """GLUS: fixed global frames + a sliding question window; SAM2 memory carried across windows."""
        cfg = self.cfg
        t, h, w = video.shape
        n = cfg.num_sam_frames
        state = MemoryState(num_frames=t)
        answer, seg_prev, boxes, pieces = None, None, None, []
        for start in range(0, t, n):
            window = list(range(start, min(start + n, t)))
            text, seg_h, box_h = self._answer(video.window_visual(start), question, tsf, num_tsf, max_new_tokens)
            if answer is None:
                answer = text
                if seg_h.shape[0] == 0:
                    return None, answer, None
            tokens = self.lv_projector(seg_h) if seg_h.shape[0] else seg_prev
            if seg_prev is not None and tokens.shape[0] != seg_prev.shape[0]:
                fill = seg_prev[tokens.shape[0]:] if tokens.shape[0] < seg_prev.shape[0] else None
                tokens = torch.cat([tokens, fill]) if fill is not None else tokens[: seg_prev.shape[0]]
            win_feats = video.feats.frames(window[0], window[-1] + 1)
            logits, win_boxes, _, _ = self._segment(
                win_feats, tokens, self.lv_projector.query(box_h), (h, w), video.sam_frames[0],
                guidance=behaviour.guidance and start == 0, prior_filter=cfg.selector.box_prior_filter_test,
                state=state, fixed_boxes=boxes, proposals=video.proposals, roi_tokens=video.roi_tokens)
            if start == 0:
                boxes = win_boxes
            seg_prev = tokens
            pieces.append(logits)
        return torch.cat(pieces, dim=1), answer, boxes

    def _prediction(self, logits, boxes, answer: str, text: str, shape: tuple[int, int, int]) -> Prediction:
        t, h, w = shape
        if logits is None or logits.shape[0] == 0:
            warnings.warn(f"the model emitted no [SEG] for {text!r} (answer {answer!r}); returning an empty mask",
                          stacklevel=3)
            empty = np.zeros((t, h, w), dtype=bool)
            return Prediction(masks=empty, boxes=np.full((t, 4), np.nan, dtype=np.float32), answer=answer,
                              masks_per_seg=np.zeros((0, t, h, w), dtype=bool), prompt_boxes=[], seg_found=False)
        masks = (logits > 0).cpu().numpy()
        first = masks[0]
        frame_boxes = np.full((t, 4), np.nan, dtype=np.float32)
        rows, cols = first.any(axis=2), first.any(axis=1)  # (t, h), (t, w)
        present = rows.any(axis=1)
        if present.any():
            y0, x0 = rows.argmax(axis=1), cols.argmax(axis=1)
            y1, x1 = h - rows[:, ::-1].argmax(axis=1), w - cols[:, ::-1].argmax(axis=1)
            frame_boxes[present] = np.stack([x0, y0, x1, y1], axis=1)[present]
        scale = np.array([w, h, w, h], dtype=np.float32)
        prompt = [b.float().cpu().numpy() * scale for b in boxes] if boxes else []
        return Prediction(masks=first, boxes=frame_boxes, answer=answer, masks_per_seg=masks, prompt_boxes=prompt,
                          seg_found=True)

    # -- persistence -----------------------------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path) -> Path:
        """Write ``config.json``, ``model.safetensors``, the tokenizer and the component configs, atomically."""
        from sparrow.storage import atomic_write_json

        directory = Path(directory)
        with atomic_directory(directory) as tmp:
            atomic_write_json(tmp / CONFIG_NAME, {"model": self.cfg.to_json(), "stage": self.stage})
            save_state(self, tmp / WEIGHTS_NAME)
            self.tokenizer.save_pretrained(tmp / "tokenizer")
            comp = tmp / "components"
            self.llm.save_config(comp / "llm")
            if self.spatial.clip is not None:
                self.spatial.save_config(comp / "vision")
            if self.temporal is not None:
                self.temporal.save_config(comp / "temporal")
            if self._sam_yaml is not None:
                from sparrow.model.pixel_decoder import copy_sam_config

                copy_sam_config(self._sam_yaml, comp)
            if self.proposer is not None:
                atomic_write_json(comp / "proposer.json", self.proposer.effective_spec())
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> "SparrowModel":
        """Rebuild from a ``save_pretrained`` folder with strict weight loading (offline; original folders unused)."""
        from sparrow.storage import DataError, read_json

        directory = Path(directory)
        if not directory.is_dir():
            raise CheckpointError(f"{directory}: not a checkpoint directory")
        config_path = directory / CONFIG_NAME
        if not config_path.is_file():
            raise CheckpointError(f"{config_path}: checkpoint config not found")
        try:
            data = read_json(config_path)
            cfg = ModelConfig.from_json(data["model"], source=str(config_path))
        except (DataError, KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{config_path}: invalid checkpoint config ({exc})") from exc
        weights = directory / WEIGHTS_NAME
        if not weights.is_file():
            raise CheckpointError(f"{weights}: checkpoint weights not found")
        model = cls(cfg, checkpoint_dir=directory)
        load_state_strict(model, weights)
        model.configure_stage(data.get("stage", "stage1"))
        return model.eval()

    # -- reporting -------------------------------------------------------------------------------------------
    def parameter_counts(self) -> dict[str, int]:
        """Parameters per top-level component (LoRA included where injected) and the trainable total."""
        counts: dict[str, int] = {}
        for name, p in self.named_parameters():
            counts[name.split(".")[0]] = counts.get(name.split(".")[0], 0) + p.numel()
        counts["total"] = sum(p.numel() for p in self.parameters())
        counts["trainable"] = sum(p.numel() for p in self.parameters() if p.requires_grad)
        return counts

    def extra_repr(self) -> str:
        return json.dumps({"host": self.cfg.host, "profile": self.cfg.profile, "stage": self.stage,
                           "tsf": self.cfg.tsf, "box": self.cfg.box, "tsf_at_test": self.cfg.tsf_at_test})


class _VideoContext:
    """The per-video part of inference, computed once and shared by every text on the video.

    Everything here depends on the frames only: the float video, the SAM2 frames and features, the encoder tokens
    (for GLUS, per question window) and the proposer's frame-0 proposals, the last three on first use."""

    def __init__(self, model: SparrowModel, frames: np.ndarray):
        self.model = model
        device = next(model.parameters()).device
        self.shape = tuple(int(v) for v in frames.shape[:3])
        self.video = to_float(frames).to(device)
        self.sizes = model.frame_sizes()
        self.sam_frames = stretch(self.video, self.sizes.sam)
        self.feats = model.sam_features(self.sam_frames, SAM_CHUNK)
        self._visual: torch.Tensor | None = None
        self._windows: dict[int, torch.Tensor] = {}
        self._context: torch.Tensor | None = None
        self._proposals = None
        self._roi_tokens = None

    def visual(self) -> torch.Tensor:
        """LLM visual tokens (N_vis, D) of the encoder frames (VideoGLaMM, UniPixel)."""
        if self._visual is None:
            m, sizes, video = self.model, self.sizes, self.video
            idx = linspace_indices(video.shape[0], m.cfg.num_frames)
            llm_frames = encoder_frames(video[idx], sizes.spatial, sizes.spatial_kind)
            temporal = None
            if sizes.temporal:
                same = sizes.temporal == sizes.spatial and sizes.spatial_kind == "clip"  # the collator's rule
                temporal = llm_frames if same else encoder_frames(video[idx], sizes.temporal, "clip")
            self._visual = m.visual_tokens(llm_frames.unsqueeze(0),
                                           None if temporal is None else temporal.unsqueeze(0))[0]
        return self._visual

    def window_visual(self, start: int) -> torch.Tensor:
        """GLUS: visual tokens of the global frames plus the question window starting at ``start``."""
        if start not in self._windows:
            m, sizes, video = self.model, self.sizes, self.video
            t, n = video.shape[0], m.cfg.num_sam_frames
            if self._context is None:
                self._context = encoder_frames(video[segment_centres(t, m.cfg.num_frames)], sizes.spatial,
                                               sizes.spatial_kind)
            window = list(range(start, min(start + n, t)))
            padded = window + [window[-1]] * (n - len(window))
            llm_frames = torch.cat([self._context, encoder_frames(video[padded], sizes.spatial, sizes.spatial_kind)])
            self._windows[start] = m.visual_tokens(llm_frames.unsqueeze(0), None)[0]
        return self._windows[start]

    def proposals(self):
        """The proposer's proposals on frame 0."""
        if self._proposals is None:
            m = self.model
            self._proposals = m.proposer.propose(m._proposer_input(self.feats, self.sam_frames[0]))[0]
        return self._proposals

    def roi_tokens(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The ROI helper's tokens of the frame-0 proposals (they do not depend on the text)."""
        if self._roi_tokens is None:
            m = self.model
            self._roi_tokens = m.roi_helper.proposal_tokens(self.proposals().boxes, m.pixel_decoder.roi_pyramid(
                self.feats, 0), m.pixel_decoder.image_size)
        return self._roi_tokens
