"""What the trainer needs from a model (the contract of :class:`sparrow.model.SparrowModel`).

The trainer is written against this protocol rather than the concrete class so that its tests can run on a
small stand-in, and so that any host preset that honours it trains the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch


@runtime_checkable
class StageOutput(Protocol):
    loss: torch.Tensor
    losses: dict[str, torch.Tensor]


@runtime_checkable
class TrainableModel(Protocol):
    """``model(batch)`` returns the weighted total loss and its terms; ``configure_stage`` sets ``requires_grad``."""

    def __call__(self, batch: Any) -> StageOutput: ...

    def configure_stage(self, stage: str) -> None: ...

    def save_pretrained(self, directory: str | Path) -> Any: ...

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> TrainableModel: ...
