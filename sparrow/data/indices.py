"""Evenly spread indices: the three rules the kit samples frames and items with.

All three spread positions with ``linspace(0, total - 1, n)``, first and last included; they differ in how a
position becomes an index and in what a short sequence gives:

- :func:`linspace_truncated`: positions truncated to int (``np.linspace(..., dtype=int)``, the released encoder
  and TSF sampling); a sequence of at most ``n`` gives every index once;
- :func:`linspace_truncated_padded`: the same, but always ``n`` indices: a shorter video repeats its last frame
  (the released ``preprocess_vision``);
- :func:`linspace_rounded_unique`: positions rounded (half to even) and deduplicated, so at most ``n`` distinct
  indices; a sequence of at most ``n`` gives every index once (benchmark subsets, validation, figures).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import numpy as np

T = TypeVar("T")


def linspace_truncated(total: int, n: int) -> list[int]:
    """``min(n, total)`` indices ``linspace(0, total - 1, .)`` truncated to int; [] for an empty sequence."""
    if total <= 0:
        return []
    return np.linspace(0, total - 1, min(n, total)).astype(int).tolist()


def linspace_truncated_padded(total: int, n: int) -> list[int]:
    """Exactly ``n`` indices: :func:`linspace_truncated` when ``total >= n``, else every frame, then the last one
    repeated."""
    if total <= 0:
        raise ValueError("a video needs at least one frame")
    if total >= n:
        return linspace_truncated(total, n)
    return list(range(total)) + [total - 1] * (n - total)


def linspace_rounded_unique(total: int, n: int) -> list[int]:
    """The distinct indices of ``linspace(0, total - 1, n)`` rounded half to even, ascending; every index when
    ``n >= total``."""
    if total <= 0:
        return []
    if n >= total:
        return list(range(total))
    return np.unique(np.linspace(0, total - 1, n).round().astype(int)).tolist()


def evenly_spread(items: Sequence[T], limit: int | None) -> list[T]:
    """``limit`` items evenly spread over ``items`` (:func:`linspace_rounded_unique`), in order; all for None."""
    if limit is None:
        return list(items)
    return [items[i] for i in linspace_rounded_unique(len(items), limit)]
