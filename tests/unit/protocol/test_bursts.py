"""A warning that comes in bursts is written once per burst, with a count: fake clock, no sleep."""
from __future__ import annotations

import logging

from cluster.protocol.bursts import BurstLog

log = logging.getLogger("sticky_cluster.test")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def lines(caplog) -> list[str]:
    said = [record.getMessage() for record in caplog.records]
    caplog.clear()
    return said


def test_a_burst_is_one_line_then_one_per_window_with_the_count(caplog):
    clock = Clock()
    burst = BurstLog(log, logging.WARNING, "out of file descriptors: not accepting for %.1f s",
                     window=60, clock=clock)
    for _ in range(120):  # every 0.5 s for a minute
        burst.note(0.5)
        clock.now += 0.5
    assert lines(caplog) == ["out of file descriptors: not accepting for 0.5 s"]
    burst.note(0.5)
    assert lines(caplog) == ["out of file descriptors: not accepting for 0.5 s "
                             "(and 119 more in the last 60 s)"]
    assert burst.count == 121


def test_the_end_of_a_burst_is_flushed_with_its_count_and_a_new_burst_is_said_at_once(caplog):
    clock = Clock()
    burst = BurstLog(log, logging.WARNING, "a worker lost %d clients", window=60, clock=clock)
    burst.note(1)
    clock.now += 1
    burst.note(2)
    burst.note(3)
    burst.flush()  # the window is not over
    assert lines(caplog) == ["a worker lost 1 clients"]
    clock.now += 60
    burst.flush()
    burst.flush()
    assert lines(caplog) == ["a worker lost 3 clients (2 more in the last 61 s)"]
    clock.now += 61
    burst.flush()
    burst.note(4)  # a new burst
    assert lines(caplog) == ["a worker lost 4 clients"]
