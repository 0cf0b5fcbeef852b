"""The worker's full garbage collections (workers.collector), on this process's own
collector: each test puts CPython's settings back as it found them."""
from __future__ import annotations

import gc
import weakref

import pytest

from workers import collector
from workers.collector import FULL_EVERY, NEVER, PAUSE_SHARE, Collector


@pytest.fixture(autouse=True)
def own_collector():
    thresholds, enabled = gc.get_threshold(), gc.isenabled()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)
    (gc.enable if enabled else gc.disable)()


class Clock:
    """A monotonic clock the test moves; each reading can cost ``step`` seconds."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.step = 0.0

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def full_collections() -> int:
    return gc.get_stats()[2]["collections"]


def test_after_the_boot_cpython_no_longer_starts_full_collections_and_the_boot_is_frozen():
    young, middle, _ = gc.get_threshold()
    booted = [object()]  # what the app allocated at import (a list: tracked)
    assert any(o is booted for o in gc.get_objects())
    Collector().take_over()
    assert gc.get_threshold() == (young, middle, NEVER)
    assert not any(o is booted for o in gc.get_objects())  # frozen: no collection walks it


def test_a_full_collection_runs_every_full_every_seconds_from_the_heartbeat():
    clock = Clock()
    worker = Collector(clock)
    worker.take_over()
    before = full_collections()
    clock.now += FULL_EVERY - 1
    worker.tick()
    assert full_collections() == before  # not due yet
    clock.now += 1
    worker.tick()
    assert full_collections() == before + 1
    worker.tick()
    assert full_collections() == before + 1  # the next one is FULL_EVERY later
    clock.now += FULL_EVERY
    worker.tick()
    assert full_collections() == before + 2


def test_a_long_full_collection_puts_the_next_further_off():
    clock = Clock()
    worker = Collector(clock)
    worker.take_over()
    clock.now += FULL_EVERY
    clock.step = 1.5  # a full collection of 1.5 s (a worker holding 12,500 clients)
    worker.tick()
    clock.step = 0.0
    before = full_collections()
    clock.now += FULL_EVERY
    worker.tick()
    assert full_collections() == before  # 1.5 s / 2 % = 75 s: not yet
    clock.now += 1.5 / PAUSE_SHARE - FULL_EVERY
    worker.tick()
    assert full_collections() == before + 1


def test_garbage_cycles_that_die_old_are_freed_by_the_worker_s_full_collection():
    clock = Clock()
    worker = Collector(clock)
    worker.take_over()

    class Session:
        pass

    session = Session()
    session.me = session  # a cycle
    gc.collect(1)  # the young collections move it to the oldest generation
    freed = []
    ref = weakref.ref(session, freed.append)
    del session
    gc.collect(1)
    assert ref() is not None  # CPython alone does not free it any more
    clock.now += FULL_EVERY
    worker.tick()
    assert ref() is None and freed


@pytest.mark.parametrize("app_choice", ["thresholds", "disabled"])
def test_an_app_that_set_its_own_garbage_collection_keeps_it(app_choice):
    clock = Clock()
    worker = Collector(clock)
    if app_choice == "thresholds":
        gc.set_threshold(5000, 20, 20)  # done by the app at import
    else:
        gc.disable()
    worker.take_over()
    assert gc.get_threshold() == ((5000, 20, 20) if app_choice == "thresholds"
                                  else worker._thresholds)
    before = full_collections()
    clock.now += 10 * FULL_EVERY
    worker.tick()
    assert full_collections() == before
    assert collector.NEVER not in gc.get_threshold()
