"""InternVideo2-Stage2_1B-224p-f4, the VideoGLaMM host's temporal encoder, in plain torch.

What the released VideoGPT+ path runs (docs/design.md §3, §5.1): a ViT on 4-frame chunks at 224 px, patch 14 with
tubelet 1 (``Conv3d`` 3 -> 1408, kernel (1, 14, 14)), a CLS token, a learned position embedding over CLS + 4 x 256 patches
(``img_pos_embed`` over CLS + 256 for single images), 40 pre-norm blocks of width 1408 with 16 heads (RMSNorm eps
1e-6 computed in fp32; bias-free ``qkv`` with RMSNorm on the flattened q and k; layer scale ``ls1``/``ls2`` in fp32;
MLP 1408 -> 6144 -> 1408 with exact GELU). The features are read after block 39 of 40
(``x_vis_return_idx=-2``, no final norm): the loop stops there, so the kit builds only the blocks that run.

Forward, comparable with the official ``vision_encoder(x, None, use_image, x_vis_return_idx=-2, x_vis_only=True)``:
``InternVideo2.forward(x)`` with ``x`` (B, 3, T, H, W), ImageNet-normalised, returns (B, 1 + T * 256, 1408), CLS
first. The temporal-encoder box (:mod:`sparrow.model.temporal_encoder`) drops the CLS and gives (T, 256, 1408).

Preprocessing (:func:`preprocess`): uint8 RGB frames stretched to 224 x 224 by ``cv2.resize`` (bilinear, aspect not
kept, no crop), then ``(x / 255 - mean) / std`` with the ImageNet mean/std in float64, cast to float32.

Weights: the released ``InternVideo2-stage2_1b-224p-f4.pt`` is a ``torch.save`` dict whose ``model`` (or DeepSpeed
``module``) entry holds the stage-2 model: ``vision_encoder.*`` (this module), ``vision_proj``, the BERT text tower,
``text_proj``, ``itm_head`` and ``temp``. :func:`release_key_map` keeps ``vision_encoder.*`` and allows the rest
by name (:data:`RELEASE_UNUSED`); any other missing or unexpected key is an error. The same map loads the file
alone (:func:`load_released`) and inside a converted model (``sparrow convert --internvideo2``); the file holds no
configuration, and :func:`release_config` reads the sizes from its shapes. The file is read with
``torch.load(weights_only=True)``; if that refuses it (a pickle holding more than tensors and plain containers,
e.g. the training ``argparse.Namespace``), the error names the refused globals and
:func:`convert_release_to_safetensors` converts it once to safetensors with those globals, named by the user,
allowed for that one read (still ``weights_only=True``: nothing else in the file can run), and
:func:`load_released` then reads the safetensors file.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sparrow.model.release_files import ReleaseError
from sparrow.model.state_report import Allowance, KeyMap, Report, Rule, Section, load_strict

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RELEASE_PREFIX = "vision_encoder."


@dataclass(frozen=True)
class InternVideo2Config:
    """Sizes of the released encoder (``pretrain_internvideo2_1b_patch14_224`` with VideoGPT+'s vision config)."""

    image_size: int = 224
    patch_size: int = 14
    num_frames: int = 4  # frames per chunk (VideoGPT+ CHUNK_SIZE)
    tubelet_size: int = 1
    embed_dim: int = 1408
    depth: int = 40
    num_heads: int = 16
    mlp_dim: int = 6144  # int(1408 * 48 / 11)
    feature_block: int = -2  # x_vis_return_idx: the loop stops after block depth + feature_block (index 38)
    norm_eps: float = 1e-6
    init_values: float = 1e-5

    def __post_init__(self) -> None:
        if self.image_size % self.patch_size or self.num_frames % self.tubelet_size:
            raise ValueError("InternVideo2Config: image_size/patch_size and num_frames/tubelet_size must divide")
        if self.embed_dim % self.num_heads:
            raise ValueError("InternVideo2Config: embed_dim must be a multiple of num_heads")
        if not 1 <= self.blocks_run <= self.depth:
            raise ValueError(f"InternVideo2Config: feature_block {self.feature_block} outside a {self.depth}-deep net")

    @classmethod
    def tiny(cls) -> InternVideo2Config:
        """A few-thousand-parameter encoder with the released structure (tests, smoke-size benchmarks)."""
        return cls(image_size=28, patch_size=14, embed_dim=32, depth=3, num_heads=2, mlp_dim=64)

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    @property
    def tokens_per_frame(self) -> int:
        return self.grid * self.grid

    @property
    def blocks_run(self) -> int:
        """Blocks evaluated before the features are read (39 of 40 for the release)."""
        return self.depth + self.feature_block + 1 if self.feature_block < 0 else self.feature_block + 1

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> InternVideo2Config:
        return cls(**data)


def _rms_norm(dim: int, eps: float) -> nn.Module:
    # LlamaRMSNorm is InternVideo2's RMSNorm: the statistics in fp32, the weight applied in the input dtype.
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    return LlamaRMSNorm(dim, eps=eps)


class LayerScale(nn.Module):
    """``x * gamma`` in fp32 (the released ``force_fp32``), returned in the input dtype."""

    def __init__(self, dim: int, init_values: float):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init_values)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() * self.gamma.float()).to(x.dtype)


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int, eps: float):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        self.q_norm = _rms_norm(dim, eps)
        self.k_norm = _rms_norm(dim, eps)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, c).unbind(2)
        # q and k are normalised over all heads together (the flattened 1408 dims), then split into heads
        q, k = self.q_norm(q), self.k_norm(k)
        q, k, v = (t.reshape(b, n, self.num_heads, c // self.num_heads).transpose(1, 2) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, cfg: InternVideo2Config):
        super().__init__()
        d = cfg.embed_dim
        self.norm1 = _rms_norm(d, cfg.norm_eps)
        self.attn = Attention(d, cfg.num_heads, cfg.norm_eps)
        self.ls1 = LayerScale(d, cfg.init_values)
        self.norm2 = _rms_norm(d, cfg.norm_eps)
        self.mlp = Mlp(d, cfg.mlp_dim)
        self.ls2 = LayerScale(d, cfg.init_values)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    def __init__(self, cfg: InternVideo2Config):
        super().__init__()
        kernel = (cfg.tubelet_size, cfg.patch_size, cfg.patch_size)
        self.proj = nn.Conv3d(3, cfg.embed_dim, kernel_size=kernel, stride=kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)  # (B, C, T', G, G)
        return x.flatten(3).permute(0, 2, 3, 1).flatten(1, 2)  # (B, T' * G * G, C), frame after frame


class InternVideo2(nn.Module):
    """The vision encoder; state_dict keys are the release's after stripping ``vision_encoder.``."""

    def __init__(self, cfg: InternVideo2Config):
        super().__init__()
        self.cfg = cfg
        d, tokens = cfg.embed_dim, cfg.tokens_per_frame
        self.patch_embed = PatchEmbed(cfg)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + cfg.num_frames // cfg.tubelet_size * tokens, d))
        self.img_pos_embed = nn.Parameter(torch.zeros(1, 1 + tokens, d))
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.blocks_run))
        for p in (self.cls_token, self.pos_embed, self.img_pos_embed):
            nn.init.trunc_normal_(p, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor, use_image: bool | None = None) -> torch.Tensor:
        """``x``: (B, 3, T, H, W) normalised chunks -> (B, 1 + T * G * G, C) tokens after the feature block.

        ``use_image`` (default: T == 1, as the released wrapper decides) selects the single-image position
        embedding."""
        t = x.shape[2]
        if use_image is None:
            use_image = t == 1
        tokens = self.patch_embed(x.to(self.patch_embed.proj.weight.dtype))
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)
        pos = self.img_pos_embed if use_image else self.pos_embed
        if tokens.shape[1] + 1 != pos.shape[1]:
            raise ValueError(
                f"InternVideo2: {t} frames of {tuple(x.shape[-2:])} give {tokens.shape[1]} patches; the position "
                f"embedding holds {pos.shape[1] - 1}"
            )
        h = torch.cat([cls, tokens], dim=1) + pos
        for block in self.blocks:
            h = block(h)
        return h


def preprocess(frames: np.ndarray, size: int = 224) -> torch.Tensor:
    """The released frame chain: (T, H, W, 3) uint8 RGB -> (T, 3, size, size) float32, normalised."""
    import cv2

    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    mean = np.array(IMAGENET_MEAN).reshape(1, 1, 3)
    std = np.array(IMAGENET_STD).reshape(1, 1, 3)
    out = [((cv2.resize(f, (size, size)) / 255.0 - mean) / std).transpose(2, 0, 1) for f in frames]
    return torch.from_numpy(np.stack(out)).float()


# -- released weights ----------------------------------------------------------------------------------------------

# What the stage-2 file holds besides the encoder this path runs, and why each part stays unused.
RELEASE_UNUSED: tuple[tuple[str, str], ...] = (
    (r"vision_encoder\.blocks\.\d+\..+", "InternVideo2: blocks after the feature block (never run)"),
    (
        r"vision_encoder\.(?:clip_.+|final_clip_decoder\..+)",
        "InternVideo2: the CLIP-distillation heads and their position embedding",
    ),
    (
        r"(?:vision_proj|text_encoder|text_proj|itm_head)\..+|temp",
        "InternVideo2: the stage-2 model outside the vision encoder (text tower, projections, ITM head)",
    ),
)


def release_key_map(cfg: InternVideo2Config) -> KeyMap:
    """The stage-2 file's keys (input ``release``) -> :class:`InternVideo2` keys: ``vision_encoder.`` stripped,
    the blocks up to the feature block; everything else of the file is allowed unused (:data:`RELEASE_UNUSED`).
    ``.under(prefix, source)`` places it in a larger model (the converter)."""
    run = "|".join(str(i) for i in range(cfg.blocks_run))
    rules = (
        Rule(rf"(blocks\.(?:{run})\..+)", r"\1"),
        Rule(r"(patch_embed\..+|cls_token|pos_embed|img_pos_embed)", r"\1"),
    )
    section = Section("InternVideo2 (temporal encoder)", "release", RELEASE_PREFIX, "", rules)
    return KeyMap("InternVideo2", (section,), tuple(Allowance(p, r) for p, r in RELEASE_UNUSED))


def read_release(path: str | Path) -> dict[str, torch.Tensor]:
    """The stage-2 state_dict of a released ``.pt`` (``model``/``module`` unwrapped) or of its safetensors
    conversion, keys under ``vision_encoder.`` (a file holding the encoder alone gets the prefix). A pickle that
    ``weights_only=True`` refuses raises a :class:`ReleaseError` naming the conversion."""
    path = Path(path)
    if not path.is_file():
        raise ReleaseError(f"{path}: InternVideo2 checkpoint not found")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises UnpicklingError (or RuntimeError) for disallowed globals
            refused = ", ".join(_refused_globals(exc)) or type(exc).__name__
            raise ReleaseError(
                f"{path}: torch.load(weights_only=True) refused the file ({refused}); convert it once with "
                f"sparrow.model.internvideo2.convert_release_to_safetensors(src, dst, allow_globals=[...the names "
                f"above]) and load the .safetensors file"
            ) from exc
        state = _unwrap(data, path)
    if not any(k.startswith(RELEASE_PREFIX) for k in state):
        state = {RELEASE_PREFIX + k: v for k, v in state.items()}
    return state


def _unwrap(data, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(data, dict):
        for key in ("model", "module"):
            if isinstance(data.get(key), dict):
                data = data[key]
                break
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise ReleaseError(f"{path}: expected a state_dict (optionally under 'model' or 'module')")
    return data


def _refused_globals(exc: BaseException) -> list[str]:
    """The dotted names of the globals torch's weights-only unpickler refused, from its message."""
    return sorted(set(re.findall(r"GLOBAL ([\w.]+)", str(exc))))


def _resolve_global(name: str) -> Any:
    module, _, attr = name.rpartition(".")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ReleaseError(f"allow_globals: {name!r} is not an importable module.attribute") from exc


def convert_release_to_safetensors(src: str | Path, dst: str | Path, allow_globals: Sequence[str] = ()) -> Path:
    """One-off conversion of a released ``.pt`` that plain ``weights_only=True`` refuses: reads ``src`` with
    ``weights_only=True`` and only the globals named in ``allow_globals`` (e.g. ``"argparse.Namespace"``, as the
    refusal lists them) allowed, keeps its state_dict and writes it to ``dst`` as safetensors, atomically."""
    from safetensors.torch import save

    from sparrow.storage import atomic_write_bytes

    src, dst = Path(src), Path(dst)
    allowed = [_resolve_global(name) for name in allow_globals]
    try:
        with torch.serialization.safe_globals(allowed):
            data = torch.load(src, map_location="cpu", weights_only=True)
    except Exception as exc:
        refused = ", ".join(_refused_globals(exc)) or f"{type(exc).__name__}: {exc}"
        raise ReleaseError(f"{src}: still refused with allow_globals={list(allow_globals)} ({refused})") from exc
    state = _unwrap(data, src)
    atomic_write_bytes(dst, save({k: v.contiguous() for k, v in state.items()}))
    return dst


def release_config(state: dict[str, torch.Tensor], num_heads: int, feature_block: int = -2) -> InternVideo2Config:
    """The :class:`InternVideo2Config` of a stage-2 state_dict (:func:`read_release`): every size but the head
    count (the bias-free ``qkv`` and the flattened q/k norms do not show it) is read from the shapes."""
    try:
        proj = state[RELEASE_PREFIX + "patch_embed.proj.weight"]  # (C, 3, tubelet, patch, patch)
        video_pos = state[RELEASE_PREFIX + "pos_embed"].shape[1] - 1
        image_pos = state[RELEASE_PREFIX + "img_pos_embed"].shape[1] - 1
        mlp = state[RELEASE_PREFIX + "blocks.0.mlp.fc1.weight"].shape[0]
    except KeyError as exc:
        raise ReleaseError(f"InternVideo2 state_dict: {exc.args[0]} not found") from exc
    blocks = {int(k.split(".")[2]) for k in state if k.startswith(RELEASE_PREFIX + "blocks.")}
    grid = math.isqrt(image_pos)
    tubelet, patch = int(proj.shape[2]), int(proj.shape[-1])
    return InternVideo2Config(
        image_size=grid * patch,
        patch_size=patch,
        num_frames=video_pos // image_pos * tubelet,
        tubelet_size=tubelet,
        embed_dim=int(proj.shape[0]),
        depth=max(blocks) + 1,
        num_heads=num_heads,
        mlp_dim=int(mlp),
        feature_block=feature_block,
    )


def load_released(model: InternVideo2, path: str | Path) -> Report:
    """Load the released file into ``model``; returns the report (raises on any unexplained key)."""
    keymap = replace(release_key_map(model.cfg), name=f"InternVideo2 {path}")
    return load_strict(model, keymap, {"release": read_release(path)})
