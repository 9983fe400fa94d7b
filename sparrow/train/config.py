"""Training settings per stage and profile (`TrainConfig`).

The paper-size values follow the released code (docs/design.md §5, §10.2 and §13):

- ``host`` (the host model's own training, which SPARROW starts from): the paper starts from released host
  checkpoints, so at paper size this stage only matters without one. VideoGLaMM's defaults: lr 3e-4, betas
  (0.9, 0.95), batch 2 x accumulation 10, ``WarmupDecayLR`` (warmup 100), 10 x 500 steps; GLUS the same with
  50 x 100 steps (GLUS-A); UniPixel's last stage: lr 2e-5, cosine with 3% warmup, global batch 32 (here 4 x 8);
  its step count depends on its data mixture (one epoch), so 5000 steps is the kit's placeholder.
- ``sam`` (smoke and mini only): the tiny SAM2's box-prompt pretraining that stands in for the released SAM2
  checkpoint (:mod:`sparrow.train.sam_pretrain`); mini: 600 steps of 8 prompts, lr 1e-3, 20 warmup steps.
- ``grounding`` (smoke and mini only): the location channel's dense-grounding pretraining that stands in for the
  hosts' pretrained grounding (:mod:`sparrow.train.grounding_pretrain`); mini: 3,000 steps of 3 videos (all their
  expressions), lr 2e-3, on the training split and a foundation corpus of other data seeds.
- ``proposer`` (the released code's "Stage 0", class-agnostic proposer pretraining): AdamW lr 2e-4, weight decay 1e-4,
  100 warmup steps then cosine decay, 64 images per device, at most 500k steps (the README's example cap).
  The released code does not set Adam betas for this stage, so torch's defaults (0.9, 0.999) apply.
- ``stage1`` (TSF injection, LoRA) and ``stage2`` (selector / box filter): AdamW lr 3e-4, betas (0.9, 0.95), weight
  decay 0, DeepSpeed ``WarmupDecayLR`` with linear warmup over 100 steps then linear decay to 0, gradient clip
  1.0, micro-batch 1, no accumulation, 30 x 500 and 8 x 500 steps, one checkpoint per 500-step "epoch".

Precision: bf16 on GPU (the released code trains in fp16 by default; bf16 needs no loss scaling and is what current
GPUs run best), fp32 on CPU where bf16 autocast is slow and changes numerics for no benefit.

``smoke`` and ``mini`` keep every setting except the sizes: a handful of steps for smoke (no warmup, so that every
step updates the weights: the released schedule's first step runs at lr 0), and for mini a step budget
that trains one variant on 2 CPU cores in about three minutes. Mini models start from random weights rather
than a pretrained host, so mini uses a larger learning rate (1e-3) and a warmup scaled to its step count; the
reason is the tiny step budget, not a tuned result.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from sparrow.profiles import check_profile, get_profile

Stage = Literal["sam", "grounding", "host", "proposer", "stage1", "stage2"]
TRAIN_STAGES: tuple[str, ...] = ("sam", "grounding", "host", "proposer", "stage1", "stage2")

# Fields that change the optimisation trajectory: a checkpoint may only be resumed under the same values.
BOOKKEEPING_FIELDS = frozenset({"checkpoint_every", "keep_checkpoints", "show_progress"})


def check_stage(stage: str) -> str:
    if stage not in TRAIN_STAGES:
        raise ValueError(f"unknown training stage {stage!r}; choose one of {', '.join(TRAIN_STAGES)}")
    return stage


@dataclass(frozen=True)
class TrainConfig:
    """Optimiser, schedule, batch and checkpoint settings of one training stage."""

    profile: str
    stage: str
    max_steps: int
    lr: float
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.0
    eps: float = 1e-8
    schedule: Literal["linear", "cosine"] = "linear"
    warmup_steps: int = 100
    batch_size: int = 1
    grad_accum: int = 1
    grad_clip: float = 1.0
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = "auto"
    checkpoint_every: int = 500
    keep_checkpoints: int = 1
    seed: int = 0
    show_progress: bool = True

    def __post_init__(self) -> None:
        check_profile(self.profile)
        check_stage(self.stage)
        if self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {self.max_steps}")
        if self.batch_size < 1 or self.grad_accum < 1:
            raise ValueError(f"batch_size and grad_accum must be >= 1, got {self.batch_size}, {self.grad_accum}")
        if self.warmup_steps < 0 or self.warmup_steps > self.max_steps:
            raise ValueError(f"warmup_steps must be in [0, max_steps={self.max_steps}], got {self.warmup_steps}")
        if self.checkpoint_every < 1 or self.keep_checkpoints < 1:
            raise ValueError("checkpoint_every and keep_checkpoints must be >= 1")
        if self.schedule not in ("linear", "cosine"):
            raise ValueError(f"schedule must be 'linear' or 'cosine', got {self.schedule!r}")
        if self.mixed_precision not in ("auto", "no", "bf16", "fp16"):
            raise ValueError(f"mixed_precision must be auto, no, bf16 or fp16, got {self.mixed_precision!r}")
        if not (self.lr > 0 and self.grad_clip > 0):
            raise ValueError(f"lr and grad_clip must be > 0, got {self.lr}, {self.grad_clip}")
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))

    @classmethod
    def for_profile(cls, profile: str, stage: str, host: str = "videoglamm", **overrides: Any) -> TrainConfig:
        """The settings of ``stage`` at ``profile`` size; ``host`` matters for the host stage at paper size only.
        Keyword overrides replace single fields."""
        section = get_profile(profile).train
        check_stage(stage)
        if host not in section.host_stage:
            raise ValueError(f"unknown host {host!r}; choose one of {', '.join(section.host_stage)}")
        sizes = section.host_stage[host] if stage == "host" else section.stages.get(stage)
        if sizes is None and stage == "grounding":
            raise ValueError(
                f"the {profile} profile has no dense-grounding pretraining; it exists for the tiny profiles only"
            )
        if sizes is None:
            raise ValueError(
                f"the {profile} profile starts from the released SAM2 checkpoint; SAM2 pretraining "
                f"({stage!r}) exists for the tiny profiles only"
            )
        if stage == "proposer":
            base: dict[str, Any] = dict(lr=2e-4, betas=(0.9, 0.999), weight_decay=1e-4, schedule="cosine")
        else:
            base = dict(lr=3e-4, betas=(0.9, 0.95), weight_decay=0.0, schedule="linear")
        base.update(sizes)
        base.update(overrides)
        return cls(profile=profile, stage=stage, **base)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["betas"] = list(self.betas)
        return out

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(row) - names)
        if unknown:
            raise ValueError(f"unknown TrainConfig fields {unknown}")
        return cls(**row)

    def trajectory_differences(self, other: TrainConfig) -> list[str]:
        """Fields (other than checkpoint bookkeeping) whose values differ; resuming across them is refused."""
        out = []
        for f in dataclasses.fields(self):
            if f.name in BOOKKEEPING_FIELDS:
                continue
            a, b = getattr(self, f.name), getattr(other, f.name)
            if a != b:
                out.append(f"{f.name}: {a!r} (checkpoint) vs {b!r} (now)")
        return out

    def resolved_precision(self, cuda_available: bool) -> str:
        """accelerate's ``mixed_precision`` value: ``auto`` means bf16 on GPU and fp32 (``no``) on CPU."""
        if self.mixed_precision == "auto":
            return "bf16" if cuda_available else "no"
        return self.mixed_precision
