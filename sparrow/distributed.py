"""The one process state of a launched run (rank, world size, barriers), shared by training and the TSF pass."""

from __future__ import annotations

from typing import Any


def process_state() -> Any:
    """accelerate's ``PartialState``, created with ``cpu=True`` when there is no GPU.

    Without ``cpu=True`` accelerate only forms a process group on accelerators and silently makes a world of one on
    a CPU-only machine (docs/runtime.md §9); with it, ranks started by torchrun or ``accelerate launch`` join a gloo
    group. The state is shared by the whole process, so whatever creates it first must make the same choice: every
    caller goes through here."""
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())
