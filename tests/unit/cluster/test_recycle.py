"""Worker recycling (``--max-worker-memory``, ``--max-worker-age``): the decision, and the
pool acting on it through the rolling drain, on a fake clock with fake processes."""
from __future__ import annotations

import pytest

from cluster.pool.pool import RECYCLE_RETRY
from cluster.pool.recycle import MB, Limits, RecyclePolicy, describe, reason
from cluster.pool.worker import State
from cluster.protocol.frames import Kind
from tests.support.fake_pool import World, exited, serving_world


@pytest.fixture
def make_world():
    worlds = []

    def make(**options) -> World:
        worlds.append(World(**options))
        return worlds[-1]

    yield make
    for world in worlds:
        world.close()


# ------------------------------------------------------------------ the decision


def test_each_worker_draws_its_limits_within_the_jitter():
    policy = RecyclePolicy(max_memory=600, memory_jitter=50, max_age=3600, age_jitter=300)
    assert policy.draw(lambda a, b: a) == Limits(600 * MB, 3600.0)
    assert policy.draw(lambda a, b: b) == Limits(550 * MB, 3900.0)  # memory down, age up


def test_the_jitter_is_a_tenth_of_its_limit_unless_given():
    policy = RecyclePolicy(max_memory=500, max_age=1000)
    assert policy.draw(lambda a, b: b) == Limits(450 * MB, 1100.0)
    assert RecyclePolicy().draw(lambda a, b: b) == Limits(None, None)
    assert not RecyclePolicy().enabled and policy.enabled


def test_a_worker_is_due_past_either_limit_and_not_at_it():
    limits = Limits(memory=100 * MB, age=60.0)
    assert reason(limits, age=10, memory=100 * MB) is None
    assert reason(limits, age=10, memory=100 * MB + 1) == "memory"
    assert reason(limits, age=60.5, memory=None) == "age"  # memory unknown: age still counts
    assert reason(Limits(), age=1e9, memory=1 << 40) is None
    assert describe("memory", limits, 10, 150 * MB) == "memory 150 MB > 100 MB"
    assert describe("age", limits, 61, None) == "age 61 s > 60 s"


# ------------------------------------------------------------------ the pool


def test_an_old_worker_is_replaced_new_one_first_then_it_drains_one_slot_at_a_time(make_world):
    world = make_world(max_worker_age=100, max_worker_age_jitter=0)
    old0, old1 = serving_world(world)
    world.tick(60)
    assert world.states() == {0: ["serving"], 1: ["serving"]}
    world.tick(41)  # both are past 100 s: one slot at a time
    assert world.states() == {0: ["serving", "booting"], 1: ["serving"]}
    assert world.pool.serving[0] is old0  # it serves until its replacement is ready
    world.tick(5)
    assert world.states() == {0: ["serving", "booting"], 1: ["serving"]}

    world.ready(world.booting(0))
    assert old0.state is State.DRAINING and world.processes.received(old0.pid) == [Kind.DRAIN]
    world.tick(1)
    assert world.states() == {0: ["draining", "serving"], 1: ["serving", "booting"]}
    world.ready(world.booting(1))
    assert old1.state is State.DRAINING
    assert world.pool.restarts["age"] == 2 and world.pool.slot_restarts[1] == 1


def test_a_worker_past_its_memory_limit_is_recycled_and_the_others_stay(make_world):
    world = make_world(max_worker_memory=100, max_worker_memory_jitter=0)
    first, second = serving_world(world)
    world.processes.rss.update({first.pid: 100 * MB, second.pid: 120 * MB})
    world.tick(1)
    assert world.states() == {0: ["serving"], 1: ["serving", "booting"]}
    world.ready(world.booting(1))
    assert second.state is State.DRAINING and first.state is State.SERVING
    assert world.pool.restarts["memory"] == 1
    world.tick(1)  # the first stays under its limit: nothing more
    assert world.states() == {0: ["serving"], 1: ["draining", "serving"]}


def test_a_replacement_that_fails_to_boot_keeps_the_old_worker_and_waits(make_world):
    world = make_world(max_worker_memory=100, max_worker_memory_jitter=0)
    first, _second = serving_world(world)
    world.processes.rss[first.pid] = 200 * MB
    for _ in range(4):  # more failures than would halt the master at start
        world.tick(1)
        world.exit(world.booting(0), exited(3))
        world.tick(RECYCLE_RETRY - 2)
        assert world.states()[0] == ["serving"]  # no retry before its time
        world.tick(2)
    assert world.halted is None and world.pool.serving[0] is first


def test_nothing_is_recycled_during_a_roll_or_a_stop(make_world):
    world = make_world(max_worker_age=100, max_worker_age_jitter=0)
    serving_world(world)
    world.pool.roll()
    world.tick(101)
    assert len(world.processes.started) == 3  # two at start, one for the roll
    world.pool.stop(graceful=True)
    world.tick(101)
    assert len(world.processes.started) == 3


def test_a_replacement_scaled_away_while_booting_lets_recycling_go_on(make_world):
    world = make_world(workers=3, max_worker_memory=100, max_worker_memory_jitter=0)
    _first, second, third = serving_world(world)
    world.processes.rss[third.pid] = 200 * MB
    world.tick(1)
    replacement = world.booting(2)
    world.pool.resize(2)  # slot 2 goes, its replacement with it
    assert replacement.state is State.DRAINING and third.state is State.DRAINING
    world.processes.rss[second.pid] = 200 * MB
    world.tick(1)
    assert world.booting(1) is not None  # the next recycling was not held up
