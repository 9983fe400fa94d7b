"""The experiments' scheduler: the pool's order comes from recorded timings (FIFO without them), never the results."""

from __future__ import annotations

from sparrow.experiments.scheduling import recorded_seconds, run_units, schedule
from sparrow.storage import atomic_write_json
from sparrow.train.trainer import RESULT_FILE


def test_schedule_is_fifo_without_timings_and_longest_first_with_them():
    assert schedule(["a", "b", "c"], lambda u: None) == ["a", "b", "c"]
    costs = {"a": 1.0, "b": None, "c": 5.0, "d": 1.0}
    assert schedule(list(costs), costs.get) == ["b", "c", "a", "d"]


def test_recorded_seconds_sums_the_finished_runs(tmp_path):
    assert recorded_seconds(tmp_path) is None
    for stage, wall in (("host", 2.5), ("sparrow/stage1", 1.5)):
        atomic_write_json(tmp_path / stage / RESULT_FILE, {"steps": 1, "wall_s": wall})
    assert recorded_seconds(tmp_path) == 4.0


def _square(x: int) -> int:
    return x * x


def test_results_keep_the_order_of_the_units_in_a_pool():
    units = [3, 1, 2]
    assert run_units(_square, units, workers=1) == [9, 1, 4]
    assert run_units(_square, units, workers=2, cost=lambda u: float(u)) == [9, 1, 4]
