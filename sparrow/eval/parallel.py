"""Ordered, streaming map over worker processes: one call per video, results in input order.

Scoring a benchmark is one independent task per video. :func:`map_ordered` runs them in a process pool and yields
each result as soon as it and every earlier one are done, keeping at most a few tasks per worker in flight: memory
stays flat however many videos there are, and a consumer that stops early stops the pool. ``workers <= 1`` runs
everything in this process, in order, with no pool.

``fn`` must be picklable (a function defined at the top level of a module) and so must the items and results; the
items are best small (paths, names), each worker reading its own data. An exception raised for an item is raised
again here, in input order: the kit's input errors (:class:`sparrow.storage.DataError`, which already name the file)
as they are, so a command still prints its one line; anything else as :class:`ItemError` naming the item, with the
original (and the worker's traceback) as its cause.
"""

from __future__ import annotations

import reprlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from typing import TypeVar

from sparrow.storage import DataError

T = TypeVar("T")
R = TypeVar("R")

# Tasks submitted ahead per worker: enough to keep every worker busy while the oldest result is collected.
_AHEAD_PER_WORKER = 2


class ItemError(RuntimeError):
    """``fn(item)`` raised; ``item`` is the input and ``__cause__`` the original exception."""

    def __init__(self, item: object, error: BaseException) -> None:
        super().__init__(f"item {reprlib.repr(item)}: {type(error).__name__}: {error}")
        self.item = item


def map_ordered(fn: Callable[[T], R], items: Iterable[T], workers: int = 1) -> Iterator[R]:
    """``fn(item)`` for each item, in input order, computed by ``workers`` processes (inline when <= 1)."""
    if workers <= 1:
        for item in items:
            try:
                result = fn(item)
            except DataError:
                raise
            except Exception as exc:
                raise ItemError(item, exc) from exc
            yield result
        return
    pending: deque[tuple[T, Future]] = deque()
    source = iter(items)
    pool = ProcessPoolExecutor(max_workers=workers)
    try:
        for item in source:
            pending.append((item, pool.submit(fn, item)))
            if len(pending) >= workers * _AHEAD_PER_WORKER:
                yield _result(*pending.popleft())
        while pending:
            yield _result(*pending.popleft())
    finally:
        # Also when the consumer stops early or an item failed: queued tasks are dropped, running ones finish.
        pool.shutdown(wait=True, cancel_futures=True)


def _result(item: T, future: Future) -> R:
    try:
        return future.result()
    except DataError:
        raise
    except Exception as exc:
        raise ItemError(item, exc) from exc
