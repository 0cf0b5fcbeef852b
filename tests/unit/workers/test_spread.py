"""The schedule a drain closes its last sessions on (:mod:`workers.spread`), on a fake clock."""
from __future__ import annotations

import pytest

from workers.spread import TICK, Spread, batches


def test_the_items_are_handed_out_evenly_over_the_window_each_once():
    spread = Spread(list(range(100)), window=10.0, start=0.0)
    assert spread.due(0.0) == []
    assert spread.due(1.0) == list(range(10))
    assert spread.due(1.0) == []  # nothing twice
    assert spread.due(5.0) == list(range(10, 50))
    assert spread.left == 50
    assert spread.due(10.0) == list(range(50, 100))
    assert spread.left == 0 and spread.due(11.0) == []


def test_a_late_call_catches_up_but_never_hands_out_more_than_there_is():
    spread = Spread(["a", "b", "c"], window=2.0, start=0.0)
    assert spread.due(0.1) == ["a"]
    assert spread.due(60.0) == ["b", "c"]


def test_no_window_hands_out_everything_at_once():
    assert Spread([1, 2, 3], window=0.0, start=5.0).due(5.0) == [1, 2, 3]


def test_the_pause_is_a_tick_at_most_and_none_once_all_are_out():
    spread = Spread([1, 2, 3], window=1.0, start=0.0)
    assert spread.pause(0.0) == TICK
    assert spread.pause(0.99) == pytest.approx(0.01)  # no sleep past the window's end
    spread.due(1.0)
    assert spread.pause(1.0) == 0.0


def test_batches_cover_the_window_in_ticks():
    now = [100.0]

    def clock() -> float:
        return now[0]

    handed: list[tuple[float, int]] = []
    for batch, pause in batches(list(range(40)), 2.0, clock):
        handed += [(now[0] - 100.0, item) for item in batch]
        assert 0 <= pause <= TICK
        now[0] += pause
    assert [item for _at, item in handed] == list(range(40))
    first, last = handed[0][0], handed[-1][0]
    assert first <= TICK and 2.0 - TICK <= last <= 2.0
    per_second = [sum(1 for at, _ in handed if int(at) == second) for second in (0, 1)]
    assert abs(per_second[0] - per_second[1]) <= 2  # as many in each second
