"""The crop encoder TSF needs: crops (N, 3, S, S) in [0, 1] -> one vector per crop (N, D).

In SPARROW this is the model's spatial encoder followed by the V->L adapter and a mean over patch tokens
(docs/design.md §4.3); the model exposes it as ``SparrowModel.encode_crops``. TSF accepts any callable of that
shape (:class:`CropEncoder`), so the pipeline does not depend on the model package.

:class:`PatchMeanEncoder` is a small fixed stand-in with the same structure (patch embedding, projection, mean
over patches), used by tests and by notebook 02 when no trained model is given. Its features are deterministic
functions of the pixels, which is all K-means needs to be exercised; they are not the model's features.
"""

from __future__ import annotations

import hashlib
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F


@runtime_checkable
class CropEncoder(Protocol):
    """Anything that maps (N, 3, S, S) float crops in [0, 1] to (N, D) features.

    Optional attributes the pipeline uses when present: ``crop_size`` (the S it expects; checked against the
    TSF config) and ``fingerprint`` (a str identifying its weights, for the cache key).
    """

    def __call__(self, crops: torch.Tensor) -> torch.Tensor: ...


class PatchMeanEncoder:
    """A fixed random patch encoder: non-overlapping patches -> linear -> GELU -> linear -> mean over patches.

    The weights come from ``seed`` alone, so two instances with the same arguments are the same encoder.
    """

    def __init__(
        self, crop_size: int, dim: int = 32, patch: int = 8, seed: int = 0, device: str | torch.device = "cpu"
    ):
        if crop_size % patch:
            raise ValueError(f"crop_size {crop_size} is not a multiple of the patch size {patch}")
        generator = torch.Generator().manual_seed(seed)
        fan_in = 3 * patch * patch
        self.crop_size = crop_size
        self.patch = patch
        self.w1 = (torch.randn(fan_in, 2 * dim, generator=generator) / fan_in**0.5).to(device)
        self.w2 = (torch.randn(2 * dim, dim, generator=generator) / (2 * dim) ** 0.5).to(device)
        self.fingerprint = f"patch-mean:S{crop_size}:D{dim}:P{patch}:seed{seed}"

    @torch.no_grad()
    def __call__(self, crops: torch.Tensor) -> torch.Tensor:
        if crops.ndim != 4 or crops.shape[1] != 3:
            raise ValueError(f"expected crops of shape (N, 3, S, S), got {tuple(crops.shape)}")
        crops = crops.to(self.w1.device, torch.float32)
        patches = F.unfold(crops * 2.0 - 1.0, kernel_size=self.patch, stride=self.patch).transpose(1, 2)
        tokens = F.gelu(patches @ self.w1) @ self.w2
        return tokens.mean(dim=1)


def encoder_fingerprint(encoder: CropEncoder, crop_size: int) -> str:
    """A stable id of the encoder's function for cache keys.

    Uses ``encoder.fingerprint`` when it declares one; otherwise hashes the encoder's output on a fixed probe
    batch (rounded to 1e-4), which changes whenever its weights do.
    """
    declared = getattr(encoder, "fingerprint", None)
    if isinstance(declared, str) and declared:
        return declared
    probe = torch.rand((2, 3, crop_size, crop_size), generator=torch.Generator().manual_seed(1234))
    with torch.no_grad():
        out = encoder(probe)
    values = torch.round(out.detach().float().cpu() * 1e4).to(torch.int64)
    digest = hashlib.sha256(values.numpy().tobytes() + str(tuple(out.shape)).encode()).hexdigest()
    return f"probe:{digest[:24]}"


def check_encoder_output(features: torch.Tensor, count: int) -> torch.Tensor:
    """Validate an encoder's answer for ``count`` crops; returns it as a 2-D tensor."""
    if not isinstance(features, torch.Tensor) or features.ndim != 2 or features.shape[0] != count:
        shape = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
        raise ValueError(f"crop encoder returned {shape} for {count} crops; expected ({count}, D)")
    return features
