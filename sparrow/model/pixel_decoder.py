"""The SAM2 pixel decoder: the ``sam2`` package's model, prompted with box corners plus the projected ``[SEG]``.

Built by ``sam2.build_sam.build_sam2`` from one of sam2's hydra configs with ``hydra_overrides_extra`` (the tiny
overrides of docs/runtime.md §5.1 under smoke/mini), or, for a local ``.yaml`` file, by instantiating its ``model``
node; a checkpoint in sam2's own format (``{"model": state_dict}``) is loaded with ``weights_only=True``. sam2 is not
vendored: the ``[SEG]`` tokens enter through a forward hook on ``sam_prompt_encoder`` that appends them to the sparse
embeddings (the released code patches the prompt encoder to accept ``text_embeds`` the same way).

Decoding (docs/design.md §3, §8):

- image features per frame: ``image_encoder`` (+ the mask decoder's ``conv_s0``/``conv_s1`` high-resolution
  projections), ``no_mem_embed`` added to the lowest-resolution level for memory-free frames;
- a query is [2 box corners + SEG token(s)] when boxes are selected, else the SEG token(s) alone, with the no-mask
  dense embedding; ``multimask_output=False``; the logits of a token's boxes are max-pooled, and the 1/4-resolution
  logits are upsampled bilinearly (``align_corners=False``) straight to the original H x W.

Propagation modes (``ModelConfig.propagation``):

- ``framewise`` (VideoGLaMM / SPARROW default): every frame decoded independently with the same prompt.
- ``memory_from_first`` (UniPixel): the prompt enters frame 0 only; later frames are conditioned by SAM2's memory
  attention over the encoded masks of earlier frames (``num_maskmem`` most recent, object pointers included).
- ``memory_every_frame`` (GLUS): every frame is prompted and also memory-conditioned on earlier frames.
- ``video_branch`` (VideoGLaMM's documented evaluation, its bundled ``SAM2VideoPredictor`` with ``add_new_text``):
  as ``memory_from_first``, with the video predictor's semantics: the ``[SEG]`` token after SAM2's two padding
  points, the multimask output with the highest predicted IoU on the prompt frame and on every tracked frame, every
  frame gated by the object score, the prompt frame's memory encoded from its binarised mask, memory features
  stored in bfloat16. (The released predictor has no box prompt; boxes, when given, enter frame 0 as in
  ``memory_from_first``.)

Memory modes use sam2's own ``_prepare_memory_conditioned_features`` and ``_encode_new_memory``; the prompt
encoding and decoding step is the same hook-based call as the framewise path, so one prompt (a token with one box)
is one memory track, and a token's tracks are max-pooled at the output. SAM2 gates memory-mode logits with its
object-score head; the kit applies that gating only at inference and only if ``SamSpec.object_score_gating``
(SPARROW's losses never supervise the object score, so the training loss sees the ungated logits).

Speed, without changing what is computed:

- framewise decoding sends every (frame, prompt) pair through the mask decoder in one batched call (bounded by
  ``DECODE_BATCH_ELEMENTS``), and ``decode_framewise_many`` does so for several samples at once; the mask decoder
  treats batch entries independently and draws no random numbers, so this equals one call per frame up to float
  rounding (tested);
- while the feature modules are frozen in training (the SPARROW stages keep SAM2 frozen), ``encode_samples`` keeps
  each sample's frame features in a :class:`FrozenFeatureCache`: a video seen again (another expression, another
  stage) is not re-encoded. Each sample's frames are encoded as a batch of their own, so cached and fresh features
  are the same bits and a resumed run equals an uninterrupted one. The host stage (which trains SAM2 at mini
  size), inference (eval mode) and GPU tensors do not use it.
"""

from __future__ import annotations

import hashlib
import shutil
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from sparrow.model.config import SamSpec

SAM_MEAN = (0.485, 0.456, 0.406)
SAM_STD = (0.229, 0.224, 0.225)
NO_OBJ_SCORE = -1024.0
# Image-embedding elements per batched framewise decoder call: every (frame, prompt) pair of a mini video in one
# call, while a paper-size SAM2 (256 x 64 x 64 per pair) is decoded 16 pairs at a time.
DECODE_BATCH_ELEMENTS = 1 << 24
# Logit of a frame where the location channel finds no referent (docs/design.md §14): an empty mask there.
EMPTY_LOGIT = -20.0
FEATURE_CACHE_BYTES = 512 << 20  # bound of the frozen-feature cache (every SPARROW-Mini training sample: ~170 MiB)


def tiny_overrides(image_size: int) -> list[str]:
    """docs/runtime.md §5.1: a 2.2 M-parameter SAM2 (Hiera embed 32, stages 1-1-2-1, d_model 64)."""
    fs = image_size // 16
    return [
        f"++model.image_size={image_size}",
        "++model.image_encoder.trunk.embed_dim=32",
        "++model.image_encoder.trunk.num_heads=1",
        "++model.image_encoder.trunk.stages=[1,1,2,1]",
        "++model.image_encoder.trunk.global_att_blocks=[3]",
        "++model.image_encoder.trunk.window_spec=[8,4,4,2]",
        "++model.image_encoder.neck.backbone_channel_list=[256,128,64,32]",
        "++model.image_encoder.neck.d_model=64",
        "++model.image_encoder.neck.position_encoding.num_pos_feats=64",
        "++model.memory_attention.d_model=64",
        "++model.memory_attention.num_layers=1",
        "++model.memory_attention.layer.d_model=64",
        "++model.memory_attention.layer.dim_feedforward=128",
        "++model.memory_attention.layer.self_attention.embedding_dim=64",
        f"++model.memory_attention.layer.self_attention.feat_sizes=[{fs},{fs}]",
        "++model.memory_attention.layer.cross_attention.embedding_dim=64",
        f"++model.memory_attention.layer.cross_attention.feat_sizes=[{fs},{fs}]",
        "++model.memory_attention.layer.cross_attention.kv_in_dim=32",
        "++model.memory_encoder.out_dim=32",
        "++model.memory_encoder.in_dim=64",
        "++model.memory_encoder.mask_downsampler.embed_dim=64",
        "++model.memory_encoder.position_encoding.num_pos_feats=32",
        "++model.memory_encoder.fuser.layer.dim=64",
        "++model.memory_encoder.fuser.num_layers=1",
        "++model.num_maskmem=3",
    ]


def sam_overrides(spec: SamSpec) -> list[str]:
    if spec.tiny:
        overrides = tiny_overrides(int(spec.image_size))
    elif spec.image_size is not None:
        fs = spec.image_size // 16
        # UniPixel runs SAM2.1 B+ at 768: the memory attention's RoPE grid follows the image size.
        overrides = [
            f"++model.image_size={spec.image_size}",
            f"++model.memory_attention.layer.self_attention.feat_sizes=[{fs},{fs}]",
            f"++model.memory_attention.layer.cross_attention.feat_sizes=[{fs},{fs}]",
        ]
    else:
        overrides = []
    return overrides + list(spec.extra_overrides)


def build_sam(spec: SamSpec, config_path: Path | None, checkpoint: Path | None) -> nn.Module:
    """A ``SAM2Base`` from a packaged config name (``config_path`` None) or a local yaml file."""
    import sam2  # noqa: F401  (initialises sam2's hydra config module)
    from sam2.build_sam import build_sam2

    overrides = sam_overrides(spec)
    if checkpoint is not None and not checkpoint.is_file():
        raise FileNotFoundError(f"SAM2 checkpoint not found: {checkpoint} (SamSpec.checkpoint)")
    if config_path is None:
        # sam2's post-processing makes an eval-mode single-mask call fall back to the multimask output with the
        # best predicted IoU when mask 0 is unstable. Only pretrained SAM2 weights have trained multimask tokens
        # and IoU head; a SAM2 trained from scratch by the kit (no SamSpec.checkpoint: smoke, mini) learns mask 0
        # alone, and the fallback would answer with its untrained masks.
        model = build_sam2(
            spec.config,
            ckpt_path=None,
            device="cpu",
            mode="eval",
            hydra_overrides_extra=overrides,
            apply_postprocessing=spec.checkpoint is not None,
        )
    else:
        from hydra.utils import instantiate
        from omegaconf import OmegaConf

        if not config_path.is_file():
            raise FileNotFoundError(f"SAM2 config not found: {config_path} (SamSpec.config)")
        cfg = OmegaConf.load(config_path)
        if overrides:
            cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist([o.lstrip("+") for o in overrides]))
        OmegaConf.resolve(cfg)
        model = instantiate(cfg.model, _recursive_=True).eval()
    if checkpoint is not None:
        load_sam_checkpoint(model, checkpoint)
    return model


def load_sam_checkpoint(model: nn.Module, checkpoint: Path) -> None:
    try:
        payload = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for truncated or foreign files
        raise ValueError(f"{checkpoint}: not a readable SAM2 checkpoint ({exc})") from exc
    if not isinstance(payload, dict) or "model" not in payload:
        raise ValueError(f"{checkpoint}: not a SAM2 checkpoint (expected a dict with a 'model' state_dict)")
    missing, unexpected = model.load_state_dict(payload["model"], strict=False)
    if missing or unexpected:
        raise ValueError(
            f"{checkpoint}: SAM2 weights do not match the config; missing keys: {sorted(missing)}; "
            f"unexpected keys: {sorted(unexpected)}"
        )


def copy_sam_config(source: Path, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / "sam2.yaml"
    shutil.copyfile(source, target)
    return target


@dataclass
class FrameFeatures:
    """SAM2 features of T frames (levels from high to low resolution, flattened (HW, T, C) as sam2 keeps them)."""

    vision_feats: list[torch.Tensor]
    vision_pos: list[torch.Tensor]
    feat_sizes: list[tuple[int, int]]
    image_size: int

    @property
    def num_frames(self) -> int:
        return self.vision_feats[-1].shape[1]

    def frames(self, start: int, stop: int) -> FrameFeatures:
        return FrameFeatures(
            [x[:, start:stop] for x in self.vision_feats],
            [x[:, start:stop] for x in self.vision_pos],
            self.feat_sizes,
            self.image_size,
        )

    @staticmethod
    def cat(parts: list[FrameFeatures]) -> FrameFeatures:
        first = parts[0]
        return FrameFeatures(
            [torch.cat([p.vision_feats[i] for p in parts], dim=1) for i in range(len(first.vision_feats))],
            [torch.cat([p.vision_pos[i] for p in parts], dim=1) for i in range(len(first.vision_pos))],
            first.feat_sizes,
            first.image_size,
        )

    def level(self, index: int, t: int | slice) -> torch.Tensor:
        """Level ``index`` of frame(s) ``t`` as (n, C, H, W)."""
        x = self.vision_feats[index][:, t]
        if x.dim() == 2:
            x = x.unsqueeze(1)
        h, w = self.feat_sizes[index]
        return x.permute(1, 2, 0).reshape(x.shape[1], x.shape[2], h, w)


def _stochastic(module: nn.Module) -> bool:
    """Whether ``module`` draws random numbers in training mode (dropout, stochastic depth)."""
    if isinstance(module, nn.modules.dropout._DropoutNd):
        return module.p > 0
    return float(getattr(module, "drop_prob", 0.0) or 0.0) > 0


class FrozenFeatureCache:
    """SAM2 features of whole frame stacks (one training sample's SAM frames), least recently used first out.

    An entry is keyed by the stack's content (a BLAKE2 digest of its float pixels) and SAM input size, and holds the
    features as that stack alone produced them, so a hit returns exactly what a miss would compute whatever else was
    in the batch. Positional encodings depend only on the feature-map sizes (every frame has the same) and are kept
    once per stack shape. The whole cache is dropped when a weight of the feature modules changes (their version
    counters or storage move)."""

    def __init__(self, max_bytes: int):
        self.max_bytes = int(max_bytes)
        self._entries: OrderedDict[tuple, list[torch.Tensor]] = OrderedDict()
        self._layout: dict[tuple, tuple[list[torch.Tensor], list[tuple[int, int]]]] = {}
        self._weights: tuple | None = None
        self.nbytes = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    @staticmethod
    def key(frames: torch.Tensor, size: int) -> tuple:
        data = frames.detach().contiguous().view(torch.uint8).numpy()  # the raw bytes, whatever the dtype
        return (size, str(frames.dtype), tuple(frames.shape), hashlib.blake2b(data.data, digest_size=16).digest())

    def check_weights(self, token: tuple) -> None:
        if token != self._weights:
            self.clear()
            self._weights = token

    def clear(self) -> None:
        self._entries.clear()
        self._layout.clear()
        self.nbytes = 0

    def get(self, key: tuple) -> FrameFeatures | None:
        feats = self._entries.get(key)
        if feats is None:
            self.misses += 1
            return None
        self.hits += 1
        self._entries.move_to_end(key)
        pos, sizes = self._layout[key[:3]]
        n = feats[-1].shape[1]
        return FrameFeatures(list(feats), [p.expand(-1, n, -1) for p in pos], list(sizes), key[0])

    def put(self, key: tuple, feats: FrameFeatures) -> None:
        levels = [x.contiguous() for x in feats.vision_feats]
        size = sum(x.numel() * x.element_size() for x in levels)
        if size > self.max_bytes:
            return
        self._layout.setdefault(key[:3], ([p[:, :1].contiguous() for p in feats.vision_pos], list(feats.feat_sizes)))
        self._entries[key] = levels
        self.nbytes += size
        while self.nbytes > self.max_bytes:
            _, old = self._entries.popitem(last=False)
            self.nbytes -= sum(x.numel() * x.element_size() for x in old)


@dataclass
class Location:
    """The location channel of one clip (:mod:`sparrow.model.dense_grounding`): per frame up to K normalised xyxy
    boxes (T, K, 4) and which of them are real (T, K); a frame without any is where the referent was not found."""

    boxes: torch.Tensor
    valid: torch.Tensor
    # SAM2's dense (mask) prompt per frame, (T, 1, 4h, 4w) logits at its mask-input size, or None: the grounding's
    # cells themselves, so that SAM2 sees the whole located region and not only its extent.
    masks: torch.Tensor | None = None

    def frames(self, start: int, stop: int) -> Location:
        masks = None if self.masks is None else self.masks[start:stop]
        return Location(self.boxes[start:stop], self.valid[start:stop], masks)

    def mask_at(self, t: int) -> torch.Tensor | None:
        """(1, 1, 4h, 4w) dense prompt of frame ``t``, or None."""
        return None if self.masks is None else self.masks[t : t + 1]

    def found(self, t: int) -> bool:
        return bool(self.valid[t].any())

    def at(self, t: int) -> torch.Tensor:
        """The real boxes of frame ``t`` (k, 4)."""
        return self.boxes[t][self.valid[t]]


# The location channel of a call's tokens: one Location for every token, one per token (tokens that ground
# different texts, e.g. the phrases of a grounded caption), or None.
Locations = Location | list[Location] | None


def locations_frames(location: Locations, start: int, stop: int) -> Locations:
    """Frames ``start:stop`` of a call's locations (:data:`Locations`)."""
    if isinstance(location, list):
        return [loc.frames(start, stop) for loc in location]
    return None if location is None else location.frames(start, stop)


@contextmanager
def _video_predictor_settings(sam: nn.Module, enabled: bool = True):
    """What ``build_sam2_video_predictor(apply_postprocessing=True)`` sets on the model: the memory of a prompted
    frame encoded from the binarised mask, and the single-mask fallback to the most stable multimask output. (Its
    ``fill_hole_area`` 8 is a no-op in the released VideoGLaMM predictor, which comments the hole filling out.)"""
    if not enabled:
        yield
        return
    decoder = sam.sam_mask_decoder
    settings = [
        (sam, "binarize_mask_from_pts_for_mem_enc", True),
        (decoder, "dynamic_multimask_via_stability", True),
        (decoder, "dynamic_multimask_stability_delta", 0.05),
        (decoder, "dynamic_multimask_stability_thresh", 0.98),
    ]
    saved = [(obj, name, getattr(obj, name)) for obj, name, _ in settings]
    for obj, name, value in settings:
        setattr(obj, name, value)
    try:
        yield
    finally:
        for obj, name, value in saved:
            setattr(obj, name, value)


@dataclass
class MemoryState:
    """SAM2 memory carried across calls (GLUS question windows): outputs keyed by absolute frame index."""

    num_frames: int
    next_frame: int = 0
    output_dict: dict | None = None
    # Tokens decoded one by one (each with its own location) keep their own memory, by token index.
    parts: dict[int, MemoryState] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.output_dict is None:
            self.output_dict = {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}

    def part(self, index: int) -> MemoryState:
        if index not in self.parts:
            self.parts[index] = MemoryState(self.num_frames)
        return self.parts[index]


class PixelDecoder(nn.Module):
    """SAM2 image features and prompt decoding with extra sparse tokens."""

    def __init__(self, sam: nn.Module, object_score_gating: bool = False, clamp_boxes: bool = True):
        super().__init__()
        self.sam = sam
        self.object_score_gating = object_score_gating
        self.clamp_boxes = clamp_boxes  # guided box prompts (SelectorSpec.clamp_boxes); the prior filter always clamps
        self._extra_tokens: torch.Tensor | None = None
        self.feature_cache = FrozenFeatureCache(FEATURE_CACHE_BYTES)
        self.register_buffer("mean", torch.tensor(SAM_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(SAM_STD).view(1, 3, 1, 1), persistent=False)
        sam.sam_prompt_encoder.register_forward_hook(self._append_tokens)

    @property
    def image_size(self) -> int:
        return int(self.sam.image_size)

    @property
    def hidden_dim(self) -> int:
        return int(self.sam.hidden_dim)

    @property
    def level_channels(self) -> tuple[int, ...]:
        """Channels of the three decoder feature levels (32, 64, 256 for SAM2-L)."""
        dec = self.sam.sam_mask_decoder
        if getattr(dec, "use_high_res_features", False):
            return (dec.conv_s0.out_channels, dec.conv_s1.out_channels, self.hidden_dim)
        return (self.hidden_dim,)

    # -- prompt-encoder hook ---------------------------------------------------------------------------------
    def _append_tokens(self, module, args, output):
        extra = self._extra_tokens
        if extra is None:
            return None
        sparse, dense = output
        if sparse.shape[0] != extra.shape[0]:
            if sparse.shape[0] != 1:
                raise ValueError(f"{sparse.shape[0]} prompts but {extra.shape[0]} extra sparse tokens")
            sparse = sparse.expand(extra.shape[0], -1, -1)
            dense = dense.expand(extra.shape[0], -1, -1, -1)
        return torch.cat([sparse, extra.to(sparse.dtype)], dim=1), dense

    @contextmanager
    def extra_sparse_tokens(self, tokens: torch.Tensor | None):
        """Within the block, every prompt-encoder call appends ``tokens`` (P, k, C) to its sparse embeddings."""
        previous = self._extra_tokens
        self._extra_tokens = tokens
        try:
            yield
        finally:
            self._extra_tokens = previous

    # -- features --------------------------------------------------------------------------------------------
    def encode(self, frames: torch.Tensor, image_size: int | None = None) -> FrameFeatures:
        """SAM2 features of frames (T, 3, H, W) in [0, 1], resized (stretched) to the SAM input size."""
        return self._encode_batch(frames, image_size or self.image_size)

    def encode_samples(self, frames: torch.Tensor) -> FrameFeatures:
        """Features of every sample's SAM frames (B, T, 3, H, W), as ``encode`` of the B * T frames.

        In training, while the feature modules are frozen and deterministic (the SPARROW stages), each sample's
        frames come from the :class:`FrozenFeatureCache` or are encoded as a batch of their own, so that a sample's
        features do not depend on the other samples of its batch and a run resumed with an empty cache computes the
        same numbers. Otherwise (the host stage trains SAM2) the B * T frames are encoded together."""
        flat = frames.flatten(0, 1)
        if not self._cache_usable(flat):
            return self.encode(flat)
        cache = self.feature_cache
        cache.check_weights(self._weights_token())
        parts = []
        with torch.no_grad():
            for sample in frames:
                key = cache.key(sample, self.image_size)
                feats = cache.get(key)
                if feats is None:
                    feats = self.encode(sample)
                    cache.put(key, feats)
                parts.append(feats)
        return parts[0] if len(parts) == 1 else FrameFeatures.cat(parts)

    def _encode_batch(self, frames: torch.Tensor, size: int) -> FrameFeatures:
        if frames.shape[-2:] != (size, size):
            frames = F.interpolate(frames, size=(size, size), mode="bilinear", align_corners=False)
        x = ((frames - self.mean) / self.std).to(self._dtype())
        sam = self.sam
        # The frozen trunk runs without a graph; the decoder's projections keep theirs when they train.
        trunk_grad = torch.is_grad_enabled() and any(p.requires_grad for p in sam.image_encoder.parameters())
        with torch.set_grad_enabled(trunk_grad):
            backbone_out = sam.image_encoder(x)
        if sam.use_high_res_features_in_sam:
            fpn = list(backbone_out["backbone_fpn"])
            fpn[0] = sam.sam_mask_decoder.conv_s0(fpn[0])
            fpn[1] = sam.sam_mask_decoder.conv_s1(fpn[1])
            backbone_out = dict(backbone_out, backbone_fpn=fpn)
        _, feats, pos, sizes = sam._prepare_backbone_features(backbone_out)
        return FrameFeatures(list(feats), list(pos), [tuple(s) for s in sizes], size)

    def _feature_modules(self) -> list[nn.Module]:
        """The modules whose outputs make up :class:`FrameFeatures` (what the frozen-feature cache stands for)."""
        sam = self.sam
        mods = [sam.image_encoder]
        if sam.use_high_res_features_in_sam:
            mods += [sam.sam_mask_decoder.conv_s0, sam.sam_mask_decoder.conv_s1]
        return mods

    def _cache_usable(self, frames: torch.Tensor) -> bool:
        if not (self.training and self.feature_cache.max_bytes > 0 and frames.device.type == "cpu"):
            return False
        for module in self._feature_modules():
            for p in module.parameters():
                if p.requires_grad:
                    return False
            for m in module.modules():
                if m.training and _stochastic(m):
                    return False
        return True

    def _weights_token(self) -> tuple:
        # Any in-place update of a parameter (optimizer step, load_state_dict) bumps its version counter.
        return tuple(
            (t.data_ptr(), t._version)
            for m in self._feature_modules()
            for t in list(m.parameters()) + list(m.buffers())
        )

    def top_level(self, feats: FrameFeatures, t: int = 0) -> torch.Tensor:
        """(1, C, h, w) lowest-resolution features of frame ``t`` without ``no_mem_embed`` (the proposer's input)."""
        return feats.level(len(feats.vision_feats) - 1, t)

    def memoryless_embed(self, feats: FrameFeatures, t: int | slice) -> torch.Tensor:
        x = feats.level(len(feats.vision_feats) - 1, t)
        if self.sam.directly_add_no_mem_embed:
            x = x + self.sam.no_mem_embed.view(1, -1, 1, 1).to(x.dtype)
        return x

    def roi_pyramid(self, feats: FrameFeatures, t: int = 0) -> list[torch.Tensor]:
        """Frame ``t`` levels as (1, C_l, H_l, W_l), ``no_mem_embed`` on the last (the ROI helper's input)."""
        levels = [feats.level(i, t) for i in range(len(feats.vision_feats) - 1)]
        return levels + [self.memoryless_embed(feats, t)]

    # -- decoding --------------------------------------------------------------------------------------------
    def _decode(
        self,
        image_embed: torch.Tensor,
        high_res: list[torch.Tensor] | None,
        boxes_px: torch.Tensor | None,
        tokens: torch.Tensor | None,
        pad_point: bool = False,
        corners: bool = False,
        mask_input: torch.Tensor | None = None,
        multimask: bool = False,
    ):
        """One decoder call for P prompts on P image embeddings: (low-res logits (P,1,h4,w4), SAM token, obj score).

        ``corners``: the boxes enter as two points labelled 2 and 3 (SAM2 pads them with a third) instead of as
        box prompts. ``mask_input``: SAM2's dense prompt, (P or 1, 1, 4h, 4w) mask logits. ``multimask``: the three
        multimask outputs, keeping the one with the highest predicted IoU and its SAM token, as sam2's
        ``_forward_sam_heads`` selects them."""
        sam = self.sam
        p = image_embed.shape[0]
        points = None
        if corners and boxes_px is not None:
            labels = torch.tensor([[2, 3]], dtype=torch.int32, device=image_embed.device).expand(p, -1)
            points, boxes_px = (boxes_px.reshape(p, 2, 2), labels), None
        elif pad_point:
            points = (
                torch.zeros(p, 1, 2, device=image_embed.device),
                -torch.ones(p, 1, dtype=torch.int32, device=image_embed.device),
            )
        with self.extra_sparse_tokens(tokens):
            masks = None if mask_input is None else mask_input.to(image_embed.dtype)
            sparse, dense = sam.sam_prompt_encoder(points=points, boxes=boxes_px, masks=masks)
        if sparse.shape[0] != p:
            sparse = sparse.expand(p, -1, -1)
        if dense.shape[0] != p:
            dense = dense.expand(p, -1, -1, -1)
        low, ious, sam_tokens, obj_scores = sam.sam_mask_decoder(
            image_embeddings=image_embed,
            image_pe=sam.sam_prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse.to(image_embed.dtype),
            dense_prompt_embeddings=dense.to(image_embed.dtype),
            multimask_output=multimask,
            repeat_image=False,
            high_res_features=high_res,
        )
        if not multimask:
            return low.float(), sam_tokens[:, 0], obj_scores
        rows = torch.arange(p, device=low.device)
        best = ious.argmax(dim=-1)
        token = sam_tokens[rows, best] if sam_tokens.shape[1] > 1 else sam_tokens[:, 0]
        return low[rows, best].unsqueeze(1).float(), token, obj_scores

    def _decode_regions(
        self, image_embed, high_res, regions: torch.Tensor, tokens: torch.Tensor, own_px=None, mask_input=None
    ):
        """:meth:`_decode` of each of P prompts with each of k location boxes (k, 4 normalised), and with its own
        box (``own_px``, (P, 4) pixels, e.g. the [BOX] path's) when given, in one call: the mask is the max over
        the boxes (a referent of several objects gets one box per object, as framewise); the object score the
        max, the SAM token that of the box scoring highest (it feeds SAM2's object pointer)."""
        p = image_embed.shape[0]
        px = (regions.float().clamp(0, 1) * self.image_size).to(image_embed.device)
        px = px.unsqueeze(0).expand(p, -1, -1)
        if own_px is not None:
            px = torch.cat([px, own_px.to(px).unsqueeze(1)], 1)
        k = px.shape[1]
        low, sam_token, obj = self._decode(
            image_embed.repeat_interleave(k, 0),
            [h.repeat_interleave(k, 0) for h in high_res] if high_res else None,
            px.reshape(p * k, 4),
            tokens.repeat_interleave(k, 0),
            mask_input=mask_input,
        )
        obj = obj.view(p, k)
        best = obj.argmax(1)
        rows = torch.arange(p, device=obj.device)
        sam_token = sam_token.view(p, k, -1)[rows, best]
        return low.view(p, k, *low.shape[1:]).max(1).values, sam_token, obj.max(1, keepdim=True).values

    def _prompts(self, tokens: torch.Tensor, boxes: list[torch.Tensor] | None):
        """Expand (N, k, C) tokens over their boxes: (P, k, C) tokens, (P, 4) pixel boxes or None, (P,) owner."""
        n = tokens.shape[0]
        if boxes is None:
            return tokens, None, torch.arange(n, device=tokens.device)
        if len(boxes) != n:
            raise ValueError(f"{len(boxes)} box lists for {n} tokens")
        counts = [int(b.shape[0]) for b in boxes]
        if min(counts, default=0) == 0:
            raise ValueError("every token needs at least one box in the guided path")
        owner = torch.repeat_interleave(
            torch.arange(n, device=tokens.device), torch.tensor(counts, device=tokens.device)
        )
        px = torch.cat(boxes).to(tokens.device).float()
        if self.clamp_boxes:
            px = px.clamp(0, 1)
        return tokens[owner], px * self.image_size, owner

    @staticmethod
    def _max_by_owner(low: torch.Tensor, owner: torch.Tensor, n: int) -> torch.Tensor:
        """(P, 1, h, w) -> (N, h, w): max over each token's prompts."""
        out = low.new_full((n,) + tuple(low.shape[-2:]), float("-inf"))
        index = owner.view(-1, 1, 1).expand(-1, *low.shape[-2:])
        return out.scatter_reduce(0, index, low[:, 0], reduce="amax", include_self=True)

    def _upsample(self, low: torch.Tensor, out_hw: tuple[int, int]) -> torch.Tensor:
        return F.interpolate(low, size=out_hw, mode="bilinear", align_corners=False)

    def decode(
        self,
        feats: FrameFeatures,
        tokens: torch.Tensor,
        boxes: list[torch.Tensor] | None,
        out_hw: tuple[int, int],
        mode: str = "framewise",
        state: MemoryState | None = None,
        location: Locations = None,
    ) -> torch.Tensor:
        """Mask logits (N, T, H, W) for N tokens (N, k, C); ``boxes``: per token (n_i, 4) normalised xyxy, or None.

        ``state`` continues a memory-mode video from an earlier call (same prompts, later frames). ``location``
        (the location channel, per frame of ``feats``): framewise, a frame's location boxes join every token's
        prompts and a frame without one is empty; in the memory modes every located frame is prompted with each
        of its location boxes and each token's own boxes (the mask the max over them) and the other frames follow
        SAM2's memory. A list of locations (one per token) decodes each token on its own, with its own memory.
        """
        if tokens.shape[0] == 0:
            return tokens.new_zeros((0, feats.num_frames) + tuple(out_hw))
        if isinstance(location, list):
            if len(location) != tokens.shape[0]:
                raise ValueError(f"{len(location)} locations for {tokens.shape[0]} tokens")
            if mode != "framewise":
                state = state or MemoryState(feats.num_frames)
                return torch.cat(
                    [
                        self.decode(
                            feats,
                            tokens[i : i + 1],
                            None if boxes is None else boxes[i : i + 1],
                            out_hw,
                            mode,
                            state.part(i),
                            location[i],
                        )
                        for i in range(tokens.shape[0])
                    ]
                )
        if mode == "framewise":
            return self.decode_framewise_many(feats, [(0, feats.num_frames, tokens, boxes, out_hw, location)])[0]
        if mode in ("memory_from_first", "memory_every_frame", "video_branch"):
            with _video_predictor_settings(self.sam, mode == "video_branch"):
                return self._decode_memory(
                    feats,
                    tokens,
                    boxes,
                    out_hw,
                    mode == "memory_every_frame",
                    state or MemoryState(feats.num_frames),
                    location,
                    video_branch=mode == "video_branch",
                )
        raise ValueError(f"unknown propagation mode {mode!r}")

    def decode_framewise_many(self, feats: FrameFeatures, requests: list[tuple]) -> list[torch.Tensor]:
        """Framewise mask logits for several (start, stop, tokens, boxes, out_hw[, location]) requests on frames of
        ``feats``; a request with a :class:`Location` is decoded frame by frame with that frame's location box
        joining each token's boxes (:meth:`decode`), every frame of every request in the same batched calls; with
        a list of locations (one per token), each token is a request of its own."""
        if any(len(r) > 5 and isinstance(r[5], list) for r in requests):
            return self._decode_per_token(feats, requests)
        if all(len(r) == 5 or r[5] is None for r in requests):
            return self._decode_framewise_many(feats, [r[:5] for r in requests])
        flat, owners = [], []
        for r, (start, stop, tokens, boxes, out_hw, *rest) in enumerate(requests):
            location = rest[0] if rest else None
            if location is None or tokens.shape[0] == 0:
                flat.append((start, stop, tokens, boxes, out_hw))
                owners.append((r, None))
                continue
            for t in range(stop - start):
                if not location.found(t):
                    continue
                here = location.at(t).to(tokens.device)
                own = [here] * tokens.shape[0] if boxes is None else [torch.cat([here, b.to(here)]) for b in boxes]
                flat.append((start + t, start + t + 1, tokens, own, out_hw, location.mask_at(t)))
                owners.append((r, t))
        decoded = self._decode_framewise_many(feats, flat)
        out: list[torch.Tensor | None] = [None] * len(requests)
        for r, (start, stop, tokens, _, out_hw, *rest) in enumerate(requests):
            if rest and rest[0] is not None and tokens.shape[0] > 0:
                out[r] = tokens.new_full((tokens.shape[0], stop - start) + tuple(out_hw), EMPTY_LOGIT)
        for (r, t), logits in zip(owners, decoded):
            if t is None:
                out[r] = logits
            else:
                out[r] = torch.cat([out[r][:, :t], logits, out[r][:, t + 1 :]], dim=1)
        return out

    def _decode_per_token(self, feats: FrameFeatures, requests: list[tuple]) -> list[torch.Tensor]:
        """:meth:`decode_framewise_many` with the requests whose location is a list split into one request per
        token, their results joined back in token order."""
        flat, counts = [], []
        for start, stop, tokens, boxes, out_hw, *rest in requests:
            location = rest[0] if rest else None
            if not isinstance(location, list) or tokens.shape[0] == 0:
                flat.append((start, stop, tokens, boxes, out_hw, None if isinstance(location, list) else location))
                counts.append(None)
                continue
            if len(location) != tokens.shape[0]:
                raise ValueError(f"{len(location)} locations for {tokens.shape[0]} tokens")
            for i in range(tokens.shape[0]):
                own = None if boxes is None else boxes[i : i + 1]
                flat.append((start, stop, tokens[i : i + 1], own, out_hw, location[i]))
            counts.append(tokens.shape[0])
        decoded = iter(self.decode_framewise_many(feats, flat))
        return [next(decoded) if n is None else torch.cat([next(decoded) for _ in range(n)]) for n in counts]

    def _decode_framewise_many(
        self,
        feats: FrameFeatures,
        requests: list[tuple],
    ) -> list[torch.Tensor]:
        """Framewise mask logits for several (start, stop, tokens, boxes, out_hw[, mask_input]) requests on frames of
        ``feats`` (``mask_input``: SAM2's dense prompt (1, 1, 4h, 4w) on every frame of the request, or None).

        Each request is what ``decode`` does for frames ``start:stop`` (every frame independently, the same prompt
        on each); since frames are independent, every (frame, prompt) pair of the requests goes through the mask
        decoder in as few calls as memory allows (box prompts and token-only prompts apart: their sparse prompts
        differ in length; with and without a dense prompt apart). Returns one (N, stop - start, H, W) tensor per request."""
        out: list[torch.Tensor | None] = [None] * len(requests)
        groups: dict[bool, list] = {}
        for r, (start, stop, tokens, boxes, out_hw, *_) in enumerate(requests):
            if tokens.shape[0] == 0:
                out[r] = tokens.new_zeros((0, stop - start) + tuple(out_hw))
                continue
            ptok, px, owner = self._prompts(tokens, boxes)
            dense = len(requests[r]) > 5 and requests[r][5] is not None
            groups.setdefault((px is not None, dense), []).append((r, ptok, px, owner))
        nlev = len(feats.vision_feats)
        h, w = feats.feat_sizes[-1]
        chunk = max(1, DECODE_BATCH_ELEMENTS // (feats.vision_feats[-1].shape[-1] * h * w))
        device = feats.vision_feats[-1].device
        for (guided, with_dense), members in groups.items():
            # Entry order: request by request, frame-major, prompt-minor.
            index, ptoks, pxs, dense = [], [], [], []
            for r, ptok, px, _ in members:
                start, stop = requests[r][:2]
                mask = requests[r][5] if len(requests[r]) > 5 else None
                n_entries = (stop - start) * ptok.shape[0]
                index.append(torch.arange(start, stop, device=device).repeat_interleave(ptok.shape[0]))
                ptoks.append(ptok.repeat(stop - start, 1, 1))
                if guided:
                    pxs.append(px.repeat(stop - start, 1))
                if with_dense:
                    dense.append(mask.expand(n_entries, -1, -1, -1))
            index = torch.cat(index)
            ptok_all = torch.cat(ptoks)
            px_all = torch.cat(pxs) if guided else None
            mask_all = torch.cat(dense) if with_dense else None
            lows = []
            for s in range(0, index.shape[0], chunk):
                idx = index[s : s + chunk]
                embed = self.memoryless_embed(feats, idx)
                high = [feats.level(i, idx) for i in range(nlev - 1)] or None
                low, _, _ = self._decode(
                    embed,
                    high,
                    None if px_all is None else px_all[s : s + chunk],
                    ptok_all[s : s + chunk],
                    mask_input=None if mask_all is None else mask_all[s : s + chunk],
                )
                lows.append(low)
            low = lows[0] if len(lows) == 1 else torch.cat(lows)
            offset = 0
            for r, ptok, _, owner in members:
                start, stop, tokens, _, out_hw = requests[r][:5]
                t, p = stop - start, ptok.shape[0]
                piece = low[offset : offset + t * p].view(t, p, *low.shape[-2:])
                offset += t * p
                out[r] = self._upsample(self._max_by_owner_frames(piece, owner, tokens.shape[0]), out_hw)
        return out

    @staticmethod
    def _max_by_owner_frames(low: torch.Tensor, owner: torch.Tensor, n: int) -> torch.Tensor:
        """(T, P, h, w) -> (N, T, h, w): per frame, the max over each token's prompts."""
        if low.shape[1] == n:
            return low.transpose(0, 1)  # one prompt per token: the max is the prompt itself
        out = low.new_full((low.shape[0], n) + tuple(low.shape[-2:]), float("-inf"))
        index = owner.view(1, -1, 1, 1).expand_as(low)
        return out.scatter_reduce(1, index, low, reduce="amax", include_self=True).transpose(0, 1)

    def _decode_memory(
        self, feats, tokens, boxes, out_hw, every_frame: bool, state: MemoryState, location=None, video_branch=False
    ):
        sam = self.sam
        n = tokens.shape[0]
        ptok, px, owner = self._prompts(tokens, boxes)
        located = None
        if location is not None:
            # The grounding stands in for the host's own grounding of the text, which names the referent wherever
            # it is seen: every located frame is prompted, in both memory modes, and SAM2's memory carries the rest.
            located = [location.found(t) for t in range(location.valid.shape[0])]
        p = ptok.shape[0]
        output_dict = state.output_dict
        # the video predictor gates every frame's logits by the object score (sam2's _forward_sam_heads)
        gate = (video_branch or self.object_score_gating and not self.training) and sam.pred_obj_scores
        outputs = []
        for local in range(feats.num_frames):
            t = state.next_frame + local
            vf = [x[:, local : local + 1].expand(-1, p, -1) for x in feats.vision_feats]
            vp = [x[:, local : local + 1].expand(-1, p, -1) for x in feats.vision_pos]
            pix = sam._prepare_memory_conditioned_features(
                frame_idx=t,
                is_init_cond_frame=t == 0,
                current_vision_feats=vf[-1:],
                current_vision_pos_embeds=vp[-1:],
                feat_sizes=feats.feat_sizes[-1:],
                output_dict=output_dict,
                num_frames=max(state.num_frames, t + 1),
            )
            high = [
                x.permute(1, 2, 0).reshape(p, x.shape[2], *s) for x, s in zip(vf[:-1], feats.feat_sizes[:-1])
            ] or None
            prompted = t == 0 or every_frame
            if located is not None:
                prompted = located[local]
            # the video predictor: no points on any frame, so sam2's _use_multimask rule (0 points within its
            # range) asks for the multimask outputs on the prompt frame and, for tracking, on every later one;
            # the [SEG] token follows SAM2's padding point and the prompt encoder's own padding
            multimask = video_branch and sam._use_multimask(t == 0, None)
            if prompted and located is not None:
                low, sam_token, obj = self._decode_regions(
                    pix, high, location.at(local), ptok, px, location.mask_at(local)
                )
            elif prompted:
                low, sam_token, obj = self._decode(
                    pix, high, px, ptok, pad_point=video_branch and px is None, multimask=multimask
                )
            else:
                low, sam_token, obj = self._decode(pix, high, None, None, pad_point=True, multimask=multimask)
            if gate:
                low = torch.where(obj.view(-1, 1, 1, 1) > 0, low, torch.full_like(low, NO_OBJ_SCORE))
            high_res_mask = F.interpolate(
                low, size=(feats.image_size, feats.image_size), mode="bilinear", align_corners=False
            )
            obj_ptr = sam.obj_ptr_proj(sam_token)
            if sam.pred_obj_scores:
                appear = torch.sigmoid(obj) if sam.soft_no_obj_ptr else (obj > 0).float()
                if sam.fixed_no_obj_ptr:
                    obj_ptr = appear * obj_ptr
                obj_ptr = obj_ptr + (1 - appear) * sam.no_obj_ptr
            mem_feats, mem_pos = sam._encode_new_memory(
                current_vision_feats=vf,
                feat_sizes=feats.feat_sizes,
                pred_masks_high_res=high_res_mask,
                object_score_logits=obj,
                is_mask_from_pts=prompted,
            )
            if video_branch:
                mem_feats = mem_feats.to(torch.bfloat16)  # the video predictor stores memory features in bf16
            entry = {"maskmem_features": mem_feats, "maskmem_pos_enc": mem_pos, "pred_masks": low, "obj_ptr": obj_ptr}
            output_dict["cond_frame_outputs" if t == 0 else "non_cond_frame_outputs"][t] = entry
            outputs.append(self._max_by_owner(low, owner, n))
        state.next_frame += feats.num_frames
        return self._upsample(torch.stack(outputs, dim=1), out_hw)

    def box_masks(
        self,
        feats: FrameFeatures,
        boxes: torch.Tensor,
        out_hw: tuple[int, int],
        t: int = 0,
        corners: bool = False,
        mask_input: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """SAM2 box -> mask logits (n, H, W) on frame ``t`` without any text token (the box prior filter).

        ``corners``: prompt with the box corners as points of labels 2 and 3 (SAM2 then adds its padding point), as
        the released prior filter does, instead of SAM2's box prompt."""
        if boxes.shape[0] == 0:
            return boxes.new_zeros((0,) + tuple(out_hw))
        n = boxes.shape[0]
        px = boxes.float().clamp(0, 1) * self.image_size
        embed = self.memoryless_embed(feats, t).expand(n, -1, -1, -1)
        high = [feats.level(i, t).expand(n, -1, -1, -1) for i in range(len(feats.vision_feats) - 1)] or None
        low, _, _ = self._decode(embed, high, px, None, corners=corners, mask_input=mask_input)
        return self._upsample(low, out_hw)[:, 0]

    def prior_masks(
        self, feats: FrameFeatures, boxes: torch.Tensor, out_hw: tuple[int, int], prompt: str = "box"
    ) -> torch.Tensor:
        """Bool masks (n, h, w) the box prior filter scores (``SelectorSpec.box_prior_prompt``): ``box``, the box
        prompt's masks at the frame size; ``corners``, the released form: corner-point prompts, masks binarised at
        the frame size, then resampled (bilinear) to 4x the prompt grid (256 x 256 for SAM2 at 1024) and cut at 0.5."""
        if prompt == "box":
            return self.box_masks(feats, boxes, out_hw) > 0
        binary = (self.box_masks(feats, boxes, out_hw, corners=True) > 0).float()
        grid_h, grid_w = self.sam.sam_prompt_encoder.image_embedding_size
        resized = F.interpolate(binary[:, None], size=(4 * grid_h, 4 * grid_w), mode="bilinear", align_corners=False)
        return resized[:, 0] > 0.5

    def _dtype(self) -> torch.dtype:
        return next(self.sam.parameters()).dtype
