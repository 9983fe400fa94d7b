"""Ordered, streamed parallel map over videos for the scorers.

``fn`` must be a picklable top-level function (it runs in worker processes when ``workers > 1``); results come
back in input order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def map_ordered(fn: Callable[[T], R], items: Iterable[T], workers: int = 1) -> Iterator[R]:
    """``fn`` over ``items`` in order: in this process for ``workers <= 1``, else in a pool of processes."""
    if workers <= 1:
        for item in items:
            yield fn(item)
        return
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=workers) as pool:
        yield from pool.map(fn, items)
