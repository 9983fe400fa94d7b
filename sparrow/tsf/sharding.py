"""Splitting the TSF pass over processes or GPUs, and merging what the ranks computed.

Launch with ``torchrun --standalone --nproc_per_node N`` or ``accelerate launch --multi_gpu --num_processes N
--num_machines 1 --mixed_precision no --dynamo_backend no`` (docs/runtime.md §9; ``accelerate launch --cpu``
starts one process only). :func:`init_shard` joins the process group through accelerate's ``PartialState``
(gloo on CPU, NCCL with each rank on its own GPU); without a launcher it is a single rank. Work is dealt by
position (``items[rank::world]``) after a deterministic sort, results go to the shared content-addressed cache,
and small per-rank summaries are gathered with ``all_gather_object`` so every rank returns the merged report.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Shard:
    rank: int = 0
    world: int = 1
    device: str = "cpu"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def take(self, items: Sequence[T]) -> list[T]:
        """This rank's share: every ``world``-th item starting at ``rank``."""
        return list(items[self.rank :: self.world])


def launched_world_size() -> int:
    """WORLD_SIZE as set by torchrun / accelerate (1 without a launcher)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def init_shard() -> Shard:
    """This process's rank in the launched group (initialising it if needed), or the single-process shard."""
    import torch

    if launched_world_size() <= 1:
        return Shard(device="cuda" if torch.cuda.is_available() else "cpu")
    from sparrow.distributed import process_state

    state = process_state()
    return Shard(rank=state.process_index, world=state.num_processes, device=str(state.device))


def gather(obj: Any, shard: Shard) -> list[Any]:
    """Every rank's ``obj`` in rank order (just ``[obj]`` for a single process)."""
    if shard.world <= 1:
        return [obj]
    import torch.distributed as dist

    out: list[Any] = [None] * shard.world
    dist.all_gather_object(out, obj)
    return out


def barrier(shard: Shard) -> None:
    if shard.world > 1:
        import torch.distributed as dist

        dist.barrier()
