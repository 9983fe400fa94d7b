"""The spatial encoder box: per-frame patch tokens from a CLIP vision tower, or Qwen2.5-VL's ViT.

- ``clip`` (VideoGLaMM: CLIP ViT-L/14-336; GLUS: CLIP ViT-L/14-224): ``transformers.CLIPVisionModel``, patch tokens
  (CLS dropped) of the layer ``select_layer`` (-2, the LLaVA/VideoGPT+ default), read with a forward hook so the
  other layers' states are not kept. Input frames are normalised with the CLIP mean/std.
- ``qwen2_5_vl`` (UniPixel): the vision tower of the Qwen2.5-VL LLM, including its 2x2 patch merger, whose output is
  already in the LLM's hidden size (the merger is UniPixel's V->L adapter). The tower belongs to the LLM module and
  is passed to ``forward`` so that its weights are stored once. Every frame is encoded as one image (the temporal
  patch is the frame repeated), a kit simplification of Qwen2.5-VL's frame-pair temporal patches.

Frames arrive as floats in [0, 1] at ``image_size`` (the collator resizes); other sizes are resized bilinearly here.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from sparrow.model.config import VisionSpec

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class SpatialEncoder(nn.Module):
    """Frames (N, 3, S, S) in [0, 1] -> patch tokens (N, G*G, C) and the grid side G."""

    def __init__(
        self,
        kind: str,
        image_size: int,
        patch_size: int,
        clip: nn.Module | None = None,
        select_layer: int = -2,
        merge_size: int = 1,
        qwen_out_dim: int = 0,
    ):
        super().__init__()
        self.kind = kind
        self.image_size = int(image_size)
        self.patch_size = int(patch_size)
        self.select_layer = select_layer
        self.clip = clip
        self.merge_size = int(merge_size)
        self.qwen_out_dim = int(qwen_out_dim)
        self.register_buffer("mean", torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(CLIP_STD).view(1, 3, 1, 1), persistent=False)
        self._captured: torch.Tensor | None = None
        if clip is not None:
            layers = getattr(clip, "vision_model", clip).encoder.layers
            layers[select_layer].register_forward_hook(self._capture)

    # -- construction ----------------------------------------------------------------------------------------
    @classmethod
    def build(cls, spec: VisionSpec, path: Path | None, visual: nn.Module | None = None) -> SpatialEncoder:
        if spec.kind == "qwen2_5_vl":
            if visual is None:
                raise ValueError("VisionSpec(kind='qwen2_5_vl') needs the Qwen2.5-VL LLM (LLMSpec.kind='qwen2_5_vl')")
            vc = visual.config
            size = spec.image_size - spec.image_size % (vc.patch_size * vc.spatial_merge_size)
            return cls(
                "qwen2_5_vl", size, vc.patch_size, merge_size=vc.spatial_merge_size, qwen_out_dim=vc.out_hidden_size
            )
        if spec.kind != "clip":
            raise ValueError(f"unknown spatial encoder kind {spec.kind!r}; choose clip or qwen2_5_vl")
        from transformers import CLIPVisionConfig, CLIPVisionModel

        if path is None:
            model = CLIPVisionModel(
                CLIPVisionConfig(
                    hidden_size=spec.hidden_size,
                    intermediate_size=spec.intermediate_size,
                    num_hidden_layers=spec.num_layers,
                    num_attention_heads=spec.num_heads,
                    image_size=spec.image_size,
                    patch_size=spec.patch_size,
                )
            )
        else:
            if not path.is_dir():
                raise FileNotFoundError(f"CLIP vision folder not found: {path} (VisionSpec.path)")
            model = CLIPVisionModel.from_pretrained(path, local_files_only=True)
        return cls.from_clip(model, spec.select_layer)

    @classmethod
    def from_clip(cls, model: nn.Module, select_layer: int) -> SpatialEncoder:
        return cls("clip", model.config.image_size, model.config.patch_size, clip=model, select_layer=select_layer)

    @classmethod
    def from_saved_config(cls, config_dir: Path, select_layer: int) -> SpatialEncoder:
        from transformers import CLIPVisionConfig, CLIPVisionModel

        return cls.from_clip(CLIPVisionModel(CLIPVisionConfig.from_pretrained(config_dir)), select_layer)

    def save_config(self, directory: Path) -> None:
        if self.clip is not None:
            self.clip.config.save_pretrained(directory)

    # -- properties ------------------------------------------------------------------------------------------
    @property
    def output_dim(self) -> int:
        return int(self.clip.config.hidden_size) if self.clip is not None else self.qwen_out_dim

    @property
    def grid(self) -> int:
        """Side of the token grid: patches for CLIP, merged patches for Qwen2.5-VL."""
        return self.image_size // self.patch_size // self.merge_size

    def trunk(self, visual: nn.Module | None = None) -> nn.Module:
        module = self.clip if self.clip is not None else visual
        if module is None:
            raise ValueError("the Qwen2.5-VL spatial encoder needs the LLM's vision tower")
        return module

    # -- forward ---------------------------------------------------------------------------------------------
    def _capture(self, module, args, output) -> None:
        self._captured = output[0] if isinstance(output, tuple) else output

    def forward(self, frames: torch.Tensor, visual: nn.Module | None = None) -> torch.Tensor:
        """``visual``: the Qwen2.5-VL tower (``kind="qwen2_5_vl"`` only)."""
        trunk = self.trunk(visual)
        if frames.shape[-1] != self.image_size or frames.shape[-2] != self.image_size:
            frames = F.interpolate(
                frames, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False
            )
        x = ((frames - self.mean) / self.std).to(next(trunk.parameters()).dtype)
        if self.clip is not None:
            self._captured = None
            self.clip(pixel_values=x)
            tokens = self._captured[:, 1:]
            self._captured = None
            return tokens
        return self._qwen_tokens(x, trunk)

    @staticmethod
    def _qwen_tokens(x: torch.Tensor, visual: nn.Module) -> torch.Tensor:
        cfg = visual.config
        ps, tps, ms = int(cfg.patch_size), int(cfg.temporal_patch_size), int(cfg.spatial_merge_size)
        n, c, h, w = x.shape
        gh, gw = h // ps, w // ps
        # Qwen2-VL image-processor patch order: merge windows first, then patches, channel x time x pixels.
        patches = x.unsqueeze(1).expand(n, tps, c, h, w)
        patches = patches.reshape(n, tps, c, gh // ms, ms, ps, gw // ms, ms, ps)
        patches = patches.permute(0, 3, 6, 4, 7, 2, 1, 5, 8).reshape(n * gh * gw, c * tps * ps * ps)
        grid = torch.tensor([[1, gh, gw]] * n, device=x.device)
        out = visual(patches, grid_thw=grid)
        merged = out if torch.is_tensor(out) else out.pooler_output
        return merged.reshape(n, (gh // ms) * (gw // ms), -1)
