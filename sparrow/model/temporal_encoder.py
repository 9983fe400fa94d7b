"""The temporal encoder box (VideoGLaMM host): a video transformer run on chunks of consecutive frames.

Released code: InternVideo2-Stage2_1B-224p-f4 on chunks of ``CHUNK_SIZE=4`` frames, 256 tokens x 1408 per frame
(CLS dropped). InternVideo2 is not in transformers and would need ``trust_remote_code``, which the kit never uses, so
the kit's temporal encoder is ``transformers.VideoMAEModel`` (tiny configurations under smoke/mini; a local
VideoMAE-L folder at paper size, whose 16-frame chunks and tubelet 2 set the chunk length). Tokens of a tubelet are
shared by its frames, giving per-frame tokens (T, G*G, C) like the released layout. Frames are normalised with the
ImageNet mean/std (VideoMAE's processor).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from sparrow.model.config import TemporalSpec

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class TemporalEncoder(nn.Module):
    """Frames (T, 3, S, S) in [0, 1], T a multiple of the chunk -> per-frame tokens (T, G*G, C)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        cfg = model.config
        self.chunk_size = int(cfg.num_frames)
        self.tubelet = int(cfg.tubelet_size)
        self.image_size = int(cfg.image_size)
        self.grid = self.image_size // int(cfg.patch_size)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    @classmethod
    def build(cls, spec: TemporalSpec, path: Path | None) -> TemporalEncoder:
        if spec.kind != "videomae":
            raise ValueError(f"unknown temporal encoder kind {spec.kind!r}; the kit supports videomae")
        from transformers import VideoMAEConfig, VideoMAEModel

        if path is None:
            model = VideoMAEModel(
                VideoMAEConfig(
                    image_size=spec.image_size,
                    patch_size=spec.patch_size,
                    num_frames=spec.chunk_size,
                    tubelet_size=spec.tubelet_size,
                    hidden_size=spec.hidden_size,
                    num_hidden_layers=spec.num_layers,
                    num_attention_heads=spec.num_heads,
                    intermediate_size=spec.intermediate_size,
                    use_mean_pooling=False,
                )
            )
        else:
            if not path.is_dir():
                raise FileNotFoundError(f"temporal encoder folder not found: {path} (TemporalSpec.path)")
            model = VideoMAEModel.from_pretrained(path, local_files_only=True)
        return cls(model)

    @classmethod
    def from_saved_config(cls, config_dir: Path) -> TemporalEncoder:
        from transformers import VideoMAEConfig, VideoMAEModel

        return cls(VideoMAEModel(VideoMAEConfig.from_pretrained(config_dir)))

    def save_config(self, directory: Path) -> None:
        self.model.config.save_pretrained(directory)

    @property
    def output_dim(self) -> int:
        return int(self.model.config.hidden_size)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        t = frames.shape[0]
        if t % self.chunk_size:
            raise ValueError(f"{t} frames is not a multiple of the temporal chunk ({self.chunk_size})")
        if frames.shape[-1] != self.image_size or frames.shape[-2] != self.image_size:
            frames = F.interpolate(
                frames, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False
            )
        x = ((frames - self.mean) / self.std).to(next(self.model.parameters()).dtype)
        chunks = x.reshape(t // self.chunk_size, self.chunk_size, *x.shape[1:])
        tokens = self.model(pixel_values=chunks).last_hidden_state  # (chunks, t' * G * G, C)
        slots = self.chunk_size // self.tubelet
        tokens = tokens.reshape(tokens.shape[0], slots, self.grid * self.grid, tokens.shape[-1])
        tokens = tokens.repeat_interleave(self.tubelet, dim=1)
        return tokens.reshape(t, self.grid * self.grid, tokens.shape[-1])
