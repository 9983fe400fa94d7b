"""Running units of work (the tables' trainings and evaluations) in order or in a pool of processes, each unit
after the units it needs.

Every unit is seeded and cached, so what the units return does not depend on the order they ran in; the order
only decides how well a pool is used. A unit starts once every unit it needs has finished, and among the units
that could start, the first in the order given goes first: callers list the units that others wait for (a host
stage) before those that wait. The pool is fed one unit per idle worker, never ahead, so that a unit that becomes
ready late is not queued behind work listed after it, and no worker idles while a unit could run.
"""

from __future__ import annotations

import multiprocessing
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import TypeVar

import torch
from tqdm.auto import tqdm

Unit = TypeVar("Unit")
Result = TypeVar("Result")


def _single_thread() -> None:
    # Two single-threaded processes use 2 cores far better than one process with 2 intra-op threads on models
    # this small (and do not oversubscribe a loaded machine).
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")


def check_needs(count: int, needs: Sequence[Sequence[int]]) -> None:
    """``needs[i]``: the indices of the units that unit ``i`` waits for; each must come before ``i``, which keeps
    the order given a valid order to run them in, one after another."""
    if len(needs) != count:
        raise ValueError(f"needs has {len(needs)} entries for {count} units")
    for i, wanted in enumerate(needs):
        bad = [j for j in wanted if not 0 <= j < i]
        if bad:
            raise ValueError(f"unit {i} needs unit(s) {bad}: a unit may only need units listed before it")


def run_units(
    work: Callable[[Unit], Result],
    units: Sequence[Unit],
    workers: int,
    show_progress: bool = False,
    needs: Sequence[Sequence[int]] | None = None,
    desc: str = "runs",
) -> list[Result]:
    """``work(unit)`` for every unit, here in the order given (``workers`` <= 1) or in a pool of ``workers``
    spawned single-threaded processes, each unit after the ones ``needs`` names (see :func:`check_needs`);
    results in the order of ``units``. ``work`` must be a module-level function (the pool pickles it)."""
    needs = [list(n) for n in needs] if needs is not None else [[] for _ in units]
    check_needs(len(units), needs)
    if workers <= 1 or len(units) <= 1:
        return [work(u) for u in tqdm(units, desc=desc, disable=not show_progress)]
    results: dict[int, Result] = {}
    waiting = list(range(len(units)))
    running: dict[Future, int] = {}
    with (
        ProcessPoolExecutor(
            max_workers=workers, mp_context=multiprocessing.get_context("spawn"), initializer=_single_thread
        ) as pool,
        tqdm(total=len(units), desc=desc, disable=not show_progress) as bar,
    ):
        while waiting or running:
            ready = [i for i in waiting if all(j in results for j in needs[i])]
            for i in ready[: workers - len(running)]:
                waiting.remove(i)
                running[pool.submit(work, units[i])] = i
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                # .result() re-raises a unit's error here, which stops the run (the pool's exit waits for the
                # units already running, whose caches stay valid for the next run).
                results[running.pop(future)] = future.result()
                bar.update(1)
    return [results[i] for i in range(len(units))]
