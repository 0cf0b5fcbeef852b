"""The worker's full garbage collections (workers.collector), on this process's own
collector: each test puts CPython's settings back as it found them. A full collection is
made long by the test's clock; the worker's resident memory is the test's too."""
from __future__ import annotations

import gc
import weakref

import pytest

from workers.collector import GROWTH, LONG_PAUSE, PAUSE_SHARE, Collector


@pytest.fixture(autouse=True)
def own_collector():
    thresholds, enabled, callbacks = gc.get_threshold(), gc.isenabled(), list(gc.callbacks)
    yield
    gc.callbacks[:] = callbacks
    gc.unfreeze()
    gc.set_threshold(*thresholds)
    (gc.enable if enabled else gc.disable)()


class Clock:
    """A monotonic clock the test moves; each full collection takes ``collection`` seconds
    of it (a callback that runs before the worker's)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.collection = 0.0
        gc.callbacks.insert(0, self._collected)

    def __call__(self) -> float:
        return self.now

    def _collected(self, phase: str, info: dict) -> None:
        if phase == "stop" and info["generation"] == 2:
            self.now += self.collection


def full_collections() -> int:
    return gc.get_stats()[2]["collections"]


def long_full_collection(clock: Clock, seconds: float) -> None:
    """A full collection started by CPython (not by the worker) that takes ``seconds``."""
    clock.collection = seconds
    gc.collect()
    clock.collection = 0.0


def promote() -> None:
    """What a young collection of the middle generation does: survivors reach the oldest."""
    gc.collect(1)


class Memory:
    """The worker's resident bytes, as the test sets them."""

    def __init__(self) -> None:
        self.bytes = 100 << 20

    def __call__(self) -> int:
        return self.bytes


def frozen(obj: object) -> bool:
    """Whether no collection but one of everything walks ``obj``."""
    return not any(o is obj for o in gc.get_objects())


def holding_collector(took: float = 1.5) -> tuple[Collector, Clock, Memory]:
    """A booted worker's collector after CPython's first full collection of ``took`` s."""
    clock, memory = Clock(), Memory()
    worker = Collector(clock, memory)
    worker.take_over()
    long_full_collection(clock, took)
    return worker, clock, memory


class Session:
    """Something a client holds, in a cycle with itself."""

    def __init__(self) -> None:
        self.me = self


def test_the_boot_is_frozen_and_short_full_collections_stay_cpython_s():
    thresholds = gc.get_threshold()
    booted = [object()]  # what the app allocated at import (a list: tracked)
    assert not frozen(booted)
    clock = Clock()
    worker = Collector(clock, Memory())
    worker.take_over()
    assert frozen(booted)  # no collection walks it
    long_full_collection(clock, LONG_PAUSE / 2)
    survivor = [object()]
    gc.collect()
    assert not worker.holding and not frozen(survivor)
    assert gc.get_threshold() == thresholds


def test_once_a_full_collection_is_long_what_survives_each_is_left_out_of_the_next():
    worker, _clock, _memory = holding_collector()
    assert worker.holding
    client = [object()]  # a client's session, connected after
    assert not frozen(client)
    gc.collect()  # CPython's next full collection walks it, once
    assert frozen(client)
    dead_young = Session()
    ref = weakref.ref(dead_young)
    del dead_young
    gc.collect()
    assert ref() is None  # a cycle that dies before a full collection is freed by it


def test_the_heartbeat_starts_a_short_full_collection_when_cpython_s_count_asks():
    worker, _clock, _memory = holding_collector()
    client = [object()]
    before = full_collections()
    for _ in range(gc.get_threshold()[2]):
        promote()
    worker.tick(1000)
    assert full_collections() == before + 1 and frozen(client)


def test_a_frozen_cycle_is_freed_once_memory_per_session_grew_a_quarter_at_the_pace():
    worker, clock, memory = holding_collector(took=1.5)
    session = Session()
    gc.collect()
    assert frozen(session)
    ref = weakref.ref(session)
    del session  # the client closed: its cycle is garbage, frozen
    gc.collect()
    assert ref() is not None
    clock.now += 1.5 / PAUSE_SHARE  # the pace allows, but memory has not grown
    worker.tick(1000)
    assert ref() is not None
    memory.bytes = int(memory.bytes * GROWTH) - 1000
    worker.tick(1000)
    assert ref() is not None
    memory.bytes += 1000
    clock.collection = 0.5  # a collection of everything that takes 0.5 s
    worker.tick(1000)
    clock.collection = 0.0
    assert ref() is None
    again = Session()
    gc.collect()
    ref = weakref.ref(again)
    del again
    worker.tick(1000)  # what a session costs now
    memory.bytes = memory.bytes * 2
    clock.now += 0.5 / PAUSE_SHARE - 1  # not yet: 0.5 s may come every 25 s
    worker.tick(1000)
    assert ref() is not None
    clock.now += 1
    worker.tick(1000)
    assert ref() is None


def test_clients_that_connect_or_stay_cost_no_walk_of_everything_clients_that_leave_do():
    worker, clock, memory = holding_collector(took=1.5)
    clock.now += 1000  # the pace allows throughout
    session = Session()
    gc.collect()
    ref = weakref.ref(session)
    del session
    for sessions in range(1000, 10001, 1000):  # memory doubles as the clients arrive
        memory.bytes = (100 << 20) + sessions * 50_000
        worker.tick(sessions)
    for _ in range(5):  # held
        worker.tick(10_000)
    assert ref() is not None
    worker.tick(6000)  # 4,000 left: memory per session up by two thirds
    assert ref() is None


def test_without_its_memory_known_a_holding_worker_collects_everything_at_its_pace():
    clock = Clock()
    worker = Collector(clock, lambda: None)
    worker.take_over()
    long_full_collection(clock, 1.0)
    session = Session()
    gc.collect()
    ref = weakref.ref(session)
    del session
    clock.now += 1.0 / PAUSE_SHARE - 1
    worker.tick(1000)
    assert ref() is not None
    clock.now += 1
    worker.tick(1000)
    assert ref() is None


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
    assert gc.get_threshold() == set_by_app and not worker.holding
    promote()
    before = full_collections()
    clock.now += 1000
    worker.tick(1000)
    assert full_collections() == before
