"""The temporal encoder box (VideoGLaMM host): a video transformer run on chunks of consecutive frames.

Two kinds (``TemporalSpec.kind``), one interface: frames (T, 3, S, S) in [0, 1] -> per-frame tokens (T, G*G, C).

- ``internvideo2`` (the paper preset): the released InternVideo2-Stage2_1B-224p-f4 in plain torch
  (:mod:`sparrow.model.internvideo2`): 4-frame chunks, tubelet 1, the features of block 39 of 40 with the CLS
  dropped, 256 tokens x 1408 per frame. Frames are stretched to 224 x 224 (no crop, bilinear), as the released
  ``cv2.resize``; the release resizes the uint8 frame and so rounds to 1/255, which
  :func:`sparrow.model.internvideo2.preprocess` reproduces exactly. ``TemporalSpec.path`` names the released ``.pt`` (or its safetensors conversion); the file holds no
  configuration, so the spec's sizes describe it and strict loading checks every shape.
- ``videomae`` (the tiny smoke/mini presets): ``transformers.VideoMAEModel``; frames follow the CLIP geometry
  (shortest edge, centre crop). Tokens of a tubelet are shared by its frames, giving the same per-frame layout.

Both normalise with the ImageNet mean/std.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from sparrow.model.config import TemporalSpec
from sparrow.model.internvideo2 import IMAGENET_MEAN, IMAGENET_STD, InternVideo2, InternVideo2Config, load_released

TEMPORAL_KINDS = ("videomae", "internvideo2")
_INTERNVIDEO2_CONFIG = "internvideo2.json"


class TemporalEncoder(nn.Module):
    """Frames (T, 3, S, S) in [0, 1], T a multiple of the chunk -> per-frame tokens (T, G*G, C).

    ``model`` is the wrapped network (its state_dict keys sit under ``model.``); ``resize_kind`` is the geometry of
    the frames it expects (``clip``: shortest edge + centre crop; ``stretch``)."""

    resize_kind = "clip"

    def __init__(self, model: nn.Module, chunk_size: int, tubelet: int, image_size: int, grid: int, output_dim: int):
        super().__init__()
        self.model = model
        self.chunk_size = chunk_size
        self.tubelet = tubelet
        self.image_size = image_size
        self.grid = grid
        self._output_dim = output_dim
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    @classmethod
    def build(cls, spec: TemporalSpec, path: Path | None) -> TemporalEncoder:
        if spec.kind == "internvideo2":
            return InternVideo2Encoder.build(spec, path)
        if spec.kind == "videomae":
            return VideoMAEEncoder.build(spec, path)
        raise ValueError(f"unknown temporal encoder kind {spec.kind!r}; choose one of {', '.join(TEMPORAL_KINDS)}")

    @classmethod
    def from_saved_config(cls, config_dir: Path) -> TemporalEncoder:
        if (config_dir / _INTERNVIDEO2_CONFIG).is_file():
            return InternVideo2Encoder.from_saved_config(config_dir)
        return VideoMAEEncoder.from_saved_config(config_dir)

    @property
    def output_dim(self) -> int:
        return self._output_dim

    def encode_chunks(self, chunks: torch.Tensor) -> torch.Tensor:
        """Normalised chunks (N, chunk, 3, S, S) -> tokens (N, chunk / tubelet, G*G, C)."""
        raise NotImplementedError

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        t = frames.shape[0]
        if t % self.chunk_size:
            raise ValueError(f"{t} frames is not a multiple of the temporal chunk ({self.chunk_size})")
        if frames.shape[-1] != self.image_size or frames.shape[-2] != self.image_size:
            frames = F.interpolate(
                frames, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False
            )
        x = ((frames - self.mean) / self.std).to(next(self.model.parameters()).dtype)
        tokens = self.encode_chunks(x.reshape(t // self.chunk_size, self.chunk_size, *x.shape[1:]))
        tokens = tokens.repeat_interleave(self.tubelet, dim=1)
        return tokens.reshape(t, self.grid * self.grid, tokens.shape[-1])


class VideoMAEEncoder(TemporalEncoder):
    @classmethod
    def build(cls, spec: TemporalSpec, path: Path | None) -> VideoMAEEncoder:
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
        return cls.wrap(model)

    @classmethod
    def wrap(cls, model: nn.Module) -> VideoMAEEncoder:
        c = model.config
        grid = int(c.image_size) // int(c.patch_size)
        return cls(model, int(c.num_frames), int(c.tubelet_size), int(c.image_size), grid, int(c.hidden_size))

    @classmethod
    def from_saved_config(cls, config_dir: Path) -> VideoMAEEncoder:
        from transformers import VideoMAEConfig, VideoMAEModel

        return cls.wrap(VideoMAEModel(VideoMAEConfig.from_pretrained(config_dir)))

    def save_config(self, directory: Path) -> None:
        self.model.config.save_pretrained(directory)

    def encode_chunks(self, chunks: torch.Tensor) -> torch.Tensor:
        tokens = self.model(pixel_values=chunks).last_hidden_state  # (N, chunk / tubelet * G * G, C)
        return tokens.reshape(tokens.shape[0], self.chunk_size // self.tubelet, self.grid * self.grid, -1)


class InternVideo2Encoder(TemporalEncoder):
    resize_kind = "stretch"

    @classmethod
    def build(cls, spec: TemporalSpec, path: Path | None) -> InternVideo2Encoder:
        cfg = InternVideo2Config(
            image_size=spec.image_size,
            patch_size=spec.patch_size,
            num_frames=spec.chunk_size,
            tubelet_size=spec.tubelet_size,
            embed_dim=spec.hidden_size,
            depth=spec.num_layers,
            num_heads=spec.num_heads,
            mlp_dim=spec.intermediate_size,
        )
        encoder = cls.wrap(InternVideo2(cfg))
        if path is not None:
            load_released(encoder.model, path)
        return encoder

    @classmethod
    def wrap(cls, model: InternVideo2) -> InternVideo2Encoder:
        c = model.cfg
        return cls(model, c.num_frames, c.tubelet_size, c.image_size, c.grid, c.embed_dim)

    @classmethod
    def from_saved_config(cls, config_dir: Path) -> InternVideo2Encoder:
        from sparrow.storage import read_json

        return cls.wrap(InternVideo2(InternVideo2Config.from_json(read_json(config_dir / _INTERNVIDEO2_CONFIG))))

    def save_config(self, directory: Path) -> None:
        from sparrow.storage import atomic_write_json

        Path(directory).mkdir(parents=True, exist_ok=True)
        atomic_write_json(Path(directory) / _INTERNVIDEO2_CONFIG, self.model.cfg.to_json())

    def encode_chunks(self, chunks: torch.Tensor) -> torch.Tensor:
        tokens = self.model(chunks.transpose(1, 2))[:, 1:]  # (N, 3, chunk, S, S) in; the CLS token dropped
        return tokens.reshape(tokens.shape[0], self.chunk_size // self.tubelet, self.grid * self.grid, -1)
