"""The worker's full garbage collections (workers.collector), on this process's own
collector: each test puts CPython's settings back as it found them. A full collection is
made long by the test's clock, which moves on each time it is read."""
from __future__ import annotations

import gc
import weakref

import pytest

from workers.collector import LONG_PAUSE, NEVER, PAUSE_SHARE, Collector


@pytest.fixture(autouse=True)
def own_collector():
    thresholds, enabled, callbacks = gc.get_threshold(), gc.isenabled(), list(gc.callbacks)
    yield
    gc.callbacks[:] = callbacks
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


def long_full_collection(clock: Clock, seconds: float) -> None:
    """A full collection started by CPython (not by the worker) that takes ``seconds``."""
    clock.step = seconds
    gc.collect()
    clock.step = 0.0


def promote() -> None:
    """What a young collection of the middle generation does: survivors reach the oldest."""
    gc.collect(1)


def test_the_boot_is_frozen_and_short_full_collections_stay_cpython_s():
    young, middle, oldest = gc.get_threshold()
    booted = [object()]  # what the app allocated at import (a list: tracked)
    assert any(o is booted for o in gc.get_objects())
    clock = Clock()
    worker = Collector(clock)
    worker.take_over()
    assert not any(o is booted for o in gc.get_objects())  # frozen: no collection walks it
    long_full_collection(clock, LONG_PAUSE / 2)
    assert gc.get_threshold() == (young, middle, oldest)


def test_after_a_long_full_collection_the_worker_starts_them_within_its_share_of_the_time():
    young, middle, _ = gc.get_threshold()
    clock = Clock()
    worker = Collector(clock)
    worker.take_over()
    long_full_collection(clock, 1.5)  # 12,500 idle clients
    assert gc.get_threshold() == (young, middle, NEVER)
    promote()
    before = full_collections()
    clock.now += 1.5 / PAUSE_SHARE - 1  # 75 s after it: not yet
    worker.tick()
    assert full_collections() == before
    clock.now += 1
    clock.step = 1.5  # a full collection of 1.5 s again
    worker.tick()
    clock.step = 0.0
    assert full_collections() == before + 1 and gc.get_threshold()[2] == NEVER
    clock.now += 1.5 / PAUSE_SHARE
    worker.tick()
    assert full_collections() == before + 1  # nothing reached the oldest generation since
    promote()
    worker.tick()
    assert full_collections() == before + 2


def test_once_a_paced_full_collection_is_short_again_cpython_has_them_back():
    thresholds = gc.get_threshold()
    clock = Clock()
    worker = Collector(clock)
    worker.take_over()
    long_full_collection(clock, 1.0)
    promote()
    clock.now += 1.0 / PAUSE_SHARE
    worker.tick()  # takes no time: the clients have gone
    assert gc.get_threshold() == thresholds


def test_garbage_cycles_that_die_old_are_freed_by_the_paced_full_collection():
    clock = Clock()
    worker = Collector(clock)
    worker.take_over()
    long_full_collection(clock, 0.5)

    class Session:
        pass

    session = Session()
    session.me = session  # a cycle
    promote()
    freed = []
    ref = weakref.ref(session, freed.append)
    del session
    promote()
    assert ref() is not None  # CPython alone does not free it any more
    clock.now += 0.5 / PAUSE_SHARE
    worker.tick()
    assert ref() is None and freed


@pytest.mark.parametrize("app_choice", ["thresholds", "disabled"])
def test_an_app_that_set_its_own_garbage_collection_keeps_it(app_choice):
    clock = Clock()
    worker = Collector(clock)
    if app_choice == "thresholds":
        gc.set_threshold(5000, 20, 20)  # done by the app at import
    set_by_app = gc.get_threshold()
    if app_choice == "disabled":
        gc.disable()
    worker.take_over()
    long_full_collection(clock, 2.0)
    assert gc.get_threshold() == set_by_app
    promote()
    before = full_collections()
    clock.now += 1000
    worker.tick()
    assert full_collections() == before
