"""The experiments' scheduler: a unit starts only after the units it needs; results keep the order of the units."""

from __future__ import annotations

import time

import pytest

from sparrow.experiments.scheduling import check_needs, run_units


def _square(x: int) -> int:
    return x * x


def test_results_keep_the_order_of_the_units_in_a_pool():
    units = [3, 1, 2]
    assert run_units(_square, units, workers=1) == [9, 1, 4]
    assert run_units(_square, units, workers=2) == [9, 1, 4]


def _stamp(unit: tuple[str, float, str]) -> tuple[str, float, float]:
    """Sleep ``unit[1]`` s; (name, start, end) as wall-clock times, comparable between the pool's processes."""
    name, seconds, _ = unit
    start = time.time()
    time.sleep(seconds)
    return name, start, time.time()


def test_a_unit_starts_after_the_units_it_needs_and_a_ready_unit_does_not_wait_behind_a_blocked_one():
    # "late" needs the slow "host"; "free" needs nothing: it must start while "host" runs, not after "late".
    units = [("host", 1.0, ""), ("late", 0.05, ""), ("free", 0.05, ""), ("other", 0.05, "")]
    needs = [[], [0], [], []]
    stamps = {name: (start, end) for name, start, end in run_units(_stamp, units, workers=2, needs=needs)}
    assert stamps["late"][0] >= stamps["host"][1]
    assert stamps["free"][0] < stamps["host"][1]
    assert stamps["other"][0] < stamps["host"][1]
    in_order = run_units(_stamp, units, workers=1, needs=needs)
    assert [name for name, _, _ in in_order] == ["host", "late", "free", "other"]


def test_needs_must_name_earlier_units():
    check_needs(3, [[], [0], [0, 1]])
    with pytest.raises(ValueError, match="unit 1 needs unit"):
        check_needs(2, [[], [1]])
    with pytest.raises(ValueError, match="2 entries for 3 units"):
        check_needs(3, [[], []])


def test_the_tables_runs_wait_for_their_host_checkpoint_and_tsf_at_test_for_its_sparrow_run():
    from sparrow.experiments.tables import TablePlan, _needs, _Unit

    plan = TablePlan("smoke", 0, (0, 1), ("videoglamm", "glus"))
    steps = [("baseline", "videoglamm", 0), ("baseline", "glus", 0), ("sparrow", "videoglamm", 1)]
    steps += [("control", "glus", 0), ("tsf", "videoglamm", 1), ("tsf_test", "videoglamm", 1)]
    units = [_Unit(plan, host, seed, step) for step, host, seed in steps]
    # every run of a host waits for its one host checkpoint (the baseline at the plan's host seed, 0)
    assert _needs(units) == [[], [], [0], [1], [0], [0, 2]]
    # The ablation's pool after the main table's: its runs' host stages are in the cache, nothing to wait for.
    assert _needs(units[4:]) == [[], []]
