"""sparrow.eval.parallel.map_ordered: input order, inline for one worker, bounded look-ahead, errors naming the item."""

from __future__ import annotations

import os
import time

import pytest

from sparrow.eval.parallel import ItemError, map_ordered
from sparrow.storage import DataError


def _square_slow_first(x: int) -> tuple[int, int]:
    # Earlier items take longer, so a pool finishes them out of order.
    time.sleep(0.05 * (4 - x) if x < 4 else 0)
    return x * x, os.getpid()


def _fail_on_three(x: int) -> int:
    if x == 3:
        raise ValueError("three is not allowed")
    return x


def test_inline_keeps_order_in_this_process():
    out = list(map_ordered(_square_slow_first, range(6)))
    assert [v for v, _ in out] == [x * x for x in range(6)]
    assert {pid for _, pid in out} == {os.getpid()}
    assert list(map_ordered(_square_slow_first, [], workers=0)) == []


def test_pool_keeps_order_and_uses_other_processes():
    out = list(map_ordered(_square_slow_first, range(8), workers=2))
    assert [v for v, _ in out] == [x * x for x in range(8)]
    assert os.getpid() not in {pid for _, pid in out}


@pytest.mark.parametrize("workers", [1, 2])
def test_streams_with_bounded_look_ahead(workers):
    pulled = []

    def endless():
        i = 0
        while True:
            pulled.append(i)
            yield i
            i += 1

    results = map_ordered(_fail_on_three, (x for x in endless() if x != 3), workers=workers)
    first = [next(results) for _ in range(3)]
    assert first == [0, 1, 2]
    # Never more than a few items per worker ahead of what was consumed, from an endless input.
    assert len(pulled) <= 3 + 1 + 2 * max(workers, 1)
    results.close()  # stops the pool


@pytest.mark.parametrize("workers", [1, 2])
def test_error_names_the_item(workers):
    got = []
    with pytest.raises(ItemError, match=r"item 3: ValueError: three is not allowed") as info:
        for value in map_ordered(_fail_on_three, range(6), workers=workers):
            got.append(value)
    assert got == [0, 1, 2]  # the results before it, in order
    assert info.value.item == 3
    assert isinstance(info.value.__cause__, ValueError)


def _bad_file(item: int) -> int:
    raise DataError(f"video{item}/00000.png: not a PNG")


@pytest.mark.parametrize("workers", [1, 2])
def test_input_errors_pass_through_unwrapped_so_commands_print_their_one_line(workers: int) -> None:
    with pytest.raises(DataError, match=r"^video0/00000.png: not a PNG$"):
        list(map_ordered(_bad_file, range(3), workers))
