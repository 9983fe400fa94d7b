"""Running independent units of work (the tables' (host, seed) groups) in order or in a pool of processes.

A unit never runs in two processes at once, and every unit is seeded and cached, so what the units return does
not depend on the order they ran in. The order only decides how well a pool is used: units are started longest
first by the seconds they took in the previous run (:func:`recorded_seconds`, what the trainer recorded under
``sparrow.paths.runs_dir``), and in the order given where nothing was recorded yet (a first run is plain FIFO).
"""

from __future__ import annotations

import multiprocessing
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import TypeVar

import torch
from tqdm.auto import tqdm

from sparrow.storage import read_json
from sparrow.train.trainer import RESULT_FILE

Unit = TypeVar("Unit")
Result = TypeVar("Result")


def recorded_seconds(folder: str | Path) -> float | None:
    """Training wall time recorded by every finished trainer run under ``folder`` (None when there is none)."""
    found = [float(read_json(path).get("wall_s", 0.0)) for path in sorted(Path(folder).glob(f"**/{RESULT_FILE}"))]
    return sum(found) if found else None


def schedule(units: Sequence[Unit], cost: Callable[[Unit], float | None]) -> list[Unit]:
    """Units without a recorded cost first, in the order given, then the others longest first (ties in order)."""
    costs = [cost(u) for u in units]
    unknown = [u for u, c in zip(units, costs) if c is None]
    known = sorted(((c, i) for i, c in enumerate(costs) if c is not None), key=lambda ci: (-ci[0], ci[1]))
    return unknown + [units[i] for _, i in known]


def _single_thread() -> None:
    # Two single-threaded processes use 2 cores far better than one process with 2 intra-op threads on models
    # this small (and do not oversubscribe a loaded machine).
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")


def run_units(
    work: Callable[[Unit], Result],
    units: Sequence[Unit],
    workers: int,
    show_progress: bool = False,
    cost: Callable[[Unit], float | None] | None = None,
    desc: str = "runs",
) -> list[Result]:
    """``work(unit)`` for every unit, here in order (``workers`` <= 1) or in a pool of ``workers`` spawned
    single-threaded processes in :func:`schedule`'s order; results in the order of ``units``. ``work`` must be
    a module-level function (the pool pickles it)."""
    if workers <= 1 or len(units) <= 1:
        return [work(u) for u in tqdm(units, desc=desc, disable=not show_progress)]
    indices = range(len(units))
    order = schedule(indices, lambda i: cost(units[i])) if cost is not None else list(indices)
    with ProcessPoolExecutor(
        max_workers=workers, mp_context=multiprocessing.get_context("spawn"), initializer=_single_thread
    ) as pool:
        futures = {i: pool.submit(work, units[i]) for i in order}
        for _ in tqdm(as_completed(futures.values()), total=len(futures), desc=desc, disable=not show_progress):
            pass
        return [futures[i].result() for i in indices]
