"""Learning-rate schedules: DeepSpeed's ``WarmupDecayLR`` (linear) and warmup + cosine.

``WarmupDecayLR`` with ``warmup_type="linear"`` and ``warmup_min_lr=0`` (the stage-1/2 setting of the released
code) gives the optimizer step ``i`` (0-based) the factor ``i / warmup`` during warmup, then
``(total - i) / (total - warmup)``: the first step runs at lr 0 and the factor reaches 0 after ``total`` steps.
The proposer stage uses the same warmup followed by a half cosine to 0.

The factor is a pure function of the step, so a resumed run only needs the step count to continue exactly.
"""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR


def lr_factor(step: int, warmup_steps: int, total_steps: int, kind: str = "linear") -> float:
    """Multiplier of the base learning rate at optimizer step ``step`` (0-based)."""
    if step < warmup_steps:
        return step / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    if kind == "linear":
        return max(0.0, (total_steps - step) / span)
    if kind == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"unknown schedule {kind!r}; choose linear or cosine")


class WarmupDecay:
    """The factor as a callable object, so that :class:`LambdaLR` saves its settings in ``state_dict()``."""

    def __init__(self, warmup_steps: int, total_steps: int, kind: str):
        self.warmup_steps, self.total_steps, self.kind = warmup_steps, total_steps, kind

    def __call__(self, step: int) -> float:
        return lr_factor(step, self.warmup_steps, self.total_steps, self.kind)


def build_scheduler(
    optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int, kind: str = "linear"
) -> LambdaLR:
    return LambdaLR(optimizer, WarmupDecay(warmup_steps, total_steps, kind))
