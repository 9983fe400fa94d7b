"""Data order and randomness that depend only on (seed, step), so a resumed run repeats an uninterrupted one.

- :class:`PassSampler` orders the dataset for data pass ``p`` by a permutation drawn from ``(seed, p)`` and tags
  every position with its own sample seed ``(seed, p, position)``.
- :class:`SeededSamples` wraps a dataset so that each sample is built under its tag: random augmentation inside
  the dataset gives the same sample whichever process, worker or prefetch order builds it.
- :func:`seed_step` reseeds torch, numpy and ``random`` from ``(seed, step, rank)`` before every optimizer step,
  so dropout and any other draw inside the model depends on the step and not on what ran before.

The data position of a run is therefore the step count: micro-batch ``k = step * grad_accum`` of a rank lies in
pass ``k // batches_per_pass`` at offset ``k % batches_per_pass``.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler


def derive_seed(*parts: int) -> int:
    """A 63-bit seed mixed from integer parts (numpy's SeedSequence, so nearby inputs give unrelated seeds)."""
    state = np.random.SeedSequence([int(p) for p in parts]).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1]))


def seed_all(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))
    random.seed(seed)


# Domain tags keep the three streams derived from one run seed apart.
_ORDER, _SAMPLE, _STEP = 1, 2, 3


def seed_step(seed: int, step: int, rank: int) -> None:
    """Reseed every generator for optimizer step ``step`` on process ``rank``."""
    seed_all(derive_seed(seed, _STEP, step, rank))


@contextmanager
def isolated_rng(seed: int) -> Iterator[None]:
    """Run a block under ``seed`` and restore the torch, numpy and ``random`` states afterwards."""
    py_state, np_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        seed_all(seed)
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


class PassSampler(Sampler):
    """Yields ``(index, sample_seed)`` pairs in the order of data pass :attr:`data_pass` (set with :meth:`set_epoch`)."""

    def __init__(self, num_samples: int, seed: int, shuffle: bool = True):
        if num_samples < 1:
            raise ValueError("cannot sample from an empty dataset")
        self.num_samples, self.seed, self.shuffle = num_samples, seed, shuffle
        self.data_pass = 0

    def set_epoch(self, data_pass: int) -> None:
        self.data_pass = int(data_pass)

    def order(self, data_pass: int) -> list[int]:
        if not self.shuffle:
            return list(range(self.num_samples))
        gen = torch.Generator().manual_seed(derive_seed(self.seed, _ORDER, data_pass))
        return torch.randperm(self.num_samples, generator=gen).tolist()

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for position, index in enumerate(self.order(self.data_pass)):
            yield index, derive_seed(self.seed, _SAMPLE, self.data_pass, position)

    def __len__(self) -> int:
        return self.num_samples


class SeededSamples(Dataset):
    """A dataset indexed by ``(index, sample_seed)``; each item is built with the generators seeded by its tag."""

    def __init__(self, base: Dataset):
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key: tuple[int, int]):
        index, sample_seed = key
        with isolated_rng(sample_seed):
            return self.base[index]
