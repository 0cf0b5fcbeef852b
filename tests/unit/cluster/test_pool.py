"""The worker pool's state machine, driven with a fake clock and fake processes.

No process is forked and nothing sleeps: a "process" is a pid the test makes up and
the worker end of a real channel (a socketpair) that the test writes the worker's
messages on and reads the master's from; its exit is a wait status the test hands to
the pool's reaper. Every path of the lifecycle: boot and ready, the rolling restart
(one slot at a time, the new worker ready before the old one drains), scaling during a
roll, the respawn backoff, the boot-failure halt, heartbeat kills, draining, and the
channels' write interest, how many workers boot at once.
"""
from __future__ import annotations

import os
import signal
import socket

import pytest

from cluster.pool.backoff import MAX_BACKOFF, STABLE_LIFE, RespawnBackoff
from cluster.pool.pool import (BOOT_FAILURE_LIMIT, DRAIN_GRACE, LATE_BEATS, SATURATED_GRACE, boot_concurrency,
                               oversubscribed)
from cluster.intake.dispatch import Dispatcher
from cluster.pool.worker import OUTBOX_LIMIT, State
from cluster.setup.config import make_settings
from cluster.protocol import frames
from cluster.protocol.frames import Kind
from tests.support.fake_pool import (BOOT_TIMEOUT, CPUS, GRACEFUL, HEARTBEAT, READ, SPREAD,
                                     TIMEOUT, WRITE, World, exited, killed_by, serving_world)


@pytest.fixture
def world():
    world = World()
    yield world
    world.close()


# --------------------------------------------------------------------- boot, ready


def test_workers_boot_then_serve_once_ready(world):
    world.pool.start()
    assert world.states() == {0: ["booting"], 1: ["booting"]}
    assert world.pool.serving == {}
    first, second = world.slot(0)[0], world.slot(1)[0]
    assert world.pool.owner(first.tag) is None  # a booting worker owns no session yet
    assert world.watcher.events(first) == READ

    world.ready(first)
    assert world.pool.serving == {0: first} and first.state is State.SERVING
    assert world.pool.owner(first.tag) is first
    world.ready(second)
    assert world.states() == {0: ["serving"], 1: ["serving"]}
    assert [tag for _slot, tag in world.processes.started] == [first.tag, second.tag]


def test_a_worker_that_says_ready_twice_is_switched_once(world):
    first, _second = serving_world(world)
    world.ready(first)
    assert world.pool.serving[0] is first and world.processes.received(first.pid) == []


# ------------------------------------------------------------------------ rolling


def test_a_roll_replaces_one_slot_at_a_time_the_new_worker_ready_before_the_old_drains(world):
    old0, old1 = serving_world(world)
    world.pool.roll()
    assert world.pool.rolling
    assert world.states() == {0: ["serving", "booting"], 1: ["serving"]}  # slot 1 waits
    new0 = world.booting(0)
    world.tick(5)
    assert world.states() == {0: ["serving", "booting"], 1: ["serving"]}  # still one at a time
    assert world.pool.serving[0] is old0  # the old one serves until the new one is ready

    world.ready(new0)
    assert world.pool.serving[0] is new0
    assert old0.state is State.DRAINING and world.processes.received(old0.pid) == [Kind.DRAIN]
    world.tick()
    new1 = world.booting(1)  # the next slot rolls once the previous one switched
    assert world.pool.serving[1] is old1

    world.ready(new1)
    assert world.pool.serving == {0: new0, 1: new1} and old1.state is State.DRAINING
    assert not world.pool.rolling and world.heard == ["roll ended"]
    assert world.pool.rolls == {"started": 1, "finished": 1, "failure": None}
    assert world.pool.restarts["hup"] == 2

    world.exit(old0)
    world.exit(old1)  # drained: they leave, nothing replaces them
    world.tick(60)
    assert world.states() == {0: ["serving"], 1: ["serving"]}
    assert world.pool.restarts["crash"] == 0


def test_a_roll_after_drained_moves_on_once_the_old_worker_has_exited():
    """``--roll-after drained``: the clients of one worker at a time reconnect."""
    world = World(workers=3, roll_after="drained")
    try:
        old0, old1, old2 = serving_world(world)
        world.pool.roll()
        world.ready(new0 := world.booting(0))
        assert old0.state is State.DRAINING
        world.tick(5)
        assert world.states()[1] == ["serving"]  # slot 1 waits for old0's drain
        world.exit(old0)
        world.tick()
        world.ready(new1 := world.booting(1))
        world.tick(5)
        assert world.states()[2] == ["serving"] and old1.state is State.DRAINING
        world.exit(old1)
        world.tick()
        world.ready(world.booting(2))
        assert not world.pool.rolling and world.heard == ["roll ended"]
        assert world.pool.serving[0] is new0 and world.pool.serving[1] is new1
        assert old2.state is State.DRAINING and world.pool.restarts["hup"] == 3
    finally:
        world.close()


def test_a_roll_names_the_slots_it_will_still_drain_and_new_sessions_pass_them_over():
    """Placement passes over the workers a roll will drain (their clients would lose their
    sessions twice): the new workers take new sessions, though they hold more."""
    world = World(workers=3, roll_after="drained")
    try:
        old0, old1, old2 = serving_world(world)
        dispatcher = Dispatcher(world.pool, make_settings("tests.apps.chat:sio"))
        assert world.pool.slots_to_roll() == ()
        world.pool.roll()
        assert set(world.pool.slots_to_roll()) == {0, 1, 2}  # slot 0's successor boots
        world.ready(new0 := world.booting(0))
        assert set(world.pool.slots_to_roll()) == {1, 2}
        world.beat(new0, sessions=500)
        world.beat(old1, sessions=3)
        world.beat(old2, sessions=3)
        for worker in (new0, old1, old2):
            world.processes.read_all(worker.pid)
        for _ in range(5):
            client, other = socket.socketpair()
            other.close()
            dispatcher.hand_off(client.detach(), ("127.0.0.5", 4000))
        assert len(world.processes.read_all(new0.pid)) == 5
        assert world.processes.read_all(old1.pid) == world.processes.read_all(old2.pid) == []
        world.exit(old0)
        world.tick()
        world.ready(world.booting(1))
        assert set(world.pool.slots_to_roll()) == {2}
        world.exit(old1)
        world.tick()
        world.ready(world.booting(2))
        assert world.pool.slots_to_roll() == () and not world.pool.rolling
    finally:
        world.close()


def test_a_roll_waits_for_a_slot_whose_worker_still_boots(world):
    world.pool.start()
    world.ready(world.slot(0)[0])
    world.pool.roll()
    new0 = world.booting(0)
    world.ready(new0)
    world.tick()
    assert world.states()[1] == ["booting"]  # slot 1 boots from before the roll: it waits
    world.ready(world.slot(1)[0])
    world.tick()
    assert world.states()[1] == ["serving", "booting"]  # then rolls like the others
    world.ready(world.booting(1))
    assert world.pool.rolls["finished"] == 1


def test_a_roll_during_a_roll_starts_over(world):
    serving_world(world)
    world.pool.roll()
    world.ready(world.booting(0))
    world.pool.roll()  # slot 0 rolled already: it rolls again
    world.tick()
    world.ready(world.booting(0))
    world.tick()
    world.ready(world.booting(1))
    assert world.pool.rolls == {"started": 2, "finished": 2, "failure": None}
    assert world.pool.restarts["hup"] == 3


def test_a_roll_stops_when_the_new_worker_dies_before_it_is_ready(world):
    old0, old1 = serving_world(world)
    world.pool.roll()
    new0 = world.booting(0)
    world.say(new0, Kind.BOOT_FAILED, b"SyntaxError: invalid syntax (app.py, line 3)")
    world.exit(new0, exited(3))
    world.tick(60)
    assert world.pool.serving == {0: old0, 1: old1}  # the old workers keep serving
    assert world.states() == {0: ["serving"], 1: ["serving"]}
    assert not world.pool.rolling and world.heard == ["roll ended"]
    assert world.pool.rolls["failure"] == (
        1, f"the new {new0} failed to boot (SyntaxError: invalid syntax (app.py, line 3))")


def test_scaling_up_during_a_roll_starts_the_new_slot_at_once(world):
    serving_world(world)
    world.pool.roll()
    world.pool.resize(3)
    assert world.states() == {0: ["serving", "booting"], 1: ["serving"], 2: ["booting"]}
    assert world.pool.restarts["scale"] == 1
    world.ready(world.booting(2), world.booting(0))
    world.tick()
    world.ready(world.booting(1))
    world.tick()
    assert world.states() == {0: ["draining", "serving"], 1: ["draining", "serving"],
                              2: ["serving"]}  # slot 2 started after the roll: not rolled
    assert world.pool.rolls == {"started": 1, "finished": 1, "failure": None}


def test_scaling_down_during_a_roll_drops_the_slots_removed(world):
    world = World(workers=3)
    try:
        serving_world(world)
        world.pool.roll()
        world.pool.resize(1)
        assert world.states() == {0: ["serving", "booting"], 1: ["draining"], 2: ["draining"]}
        world.ready(world.booting(0))
        world.tick()
        assert world.states() == {0: ["draining", "serving"], 1: ["draining"],
                                  2: ["draining"]}  # no new worker for slots 1 and 2
        assert not world.pool.rolling and world.heard == ["roll ended"]
    finally:
        world.close()


def test_scaling_away_the_slot_that_rolls_ends_the_roll_without_a_failure(world):
    serving_world(world)
    world.pool.roll()
    world.ready(world.booting(0))
    world.tick()
    new1 = world.booting(1)
    world.pool.resize(1)
    assert new1.state is State.DRAINING
    assert not world.pool.rolling and world.heard == ["roll ended"]
    world.exit(new1)
    assert world.pool.rolls == {"started": 1, "finished": 1, "failure": None}


# ------------------------------------------------------------------------ scaling


def test_scaling_starts_and_retires_the_difference(world):
    serving_world(world)
    world.pool.resize(3)
    assert world.states()[2] == ["booting"]
    world.ready(world.booting(2))
    world.pool.resize(1)
    assert world.states() == {0: ["serving"], 1: ["draining"], 2: ["draining"]}
    assert sorted(world.pool.serving) == [0]
    world.pool.resize(0)  # never fewer than one
    assert world.pool.size == 1


# ------------------------------------------------------------- crashes and backoff


def test_a_crashing_slot_is_respawned_after_a_backoff_that_doubles(world):
    serving_world(world)
    for delay in (0.2, 0.4, 0.8, 1.6):
        worker = world.pool.serving[0]
        world.tick(1.0)  # a short life
        world.exit(worker, killed_by(signal.SIGSEGV))
        world.tick(delay - 0.01)
        assert world.pool.in_slot(0) == []
        world.tick(0.02)
        world.ready(world.booting(0))
    assert world.pool.restarts["crash"] == 4 and world.pool.slot_restarts[0] == 4


def test_only_a_dead_workers_successor_is_forked_cold_the_others_from_the_template(world):
    serving_world(world)  # the first workers: warm
    world.pool.roll()
    world.ready(world.booting(0))  # a roll's new worker: warm
    world.tick()
    world.ready(world.booting(1))
    world.pool.resize(3)  # scaling up: warm
    world.ready(world.booting(2))
    assert world.processes.warm == [True] * 5
    world.exit(world.pool.serving[1], killed_by(signal.SIGKILL))
    world.tick(1.0)
    world.ready(world.booting(1))
    assert world.processes.warm[-1] is False  # its clients reconnect to the survivors


def test_the_backoff_is_capped_and_kept_per_slot():
    backoff = RespawnBackoff()
    delays = [backoff.delay(0, 1.0)[0] for _ in range(12)]
    assert delays[:3] == [0.2, 0.4, 0.8] and delays[-1] == MAX_BACKOFF
    assert backoff.delay(1, 1.0) == (0.2, 1)  # another slot has its own streak
    assert backoff.delay(0, STABLE_LIFE + 1) == (0.0, 0)


def test_a_long_life_resets_the_backoff(world):
    serving_world(world)
    for _ in range(3):
        worker = world.pool.serving[0]
        world.tick(1.0)
        world.exit(worker, exited(1))
        world.tick(5.0)
        world.ready(world.booting(0))
    worker = world.pool.serving[0]
    for _ in range(6):  # a long, healthy life
        world.tick(2.0)
        world.beat(worker)
        world.beat(world.pool.serving[1])
    world.exit(worker, exited(1))
    world.tick()
    assert world.booting(0)  # at once


def test_workers_failing_to_boot_three_times_in_a_row_with_none_serving_halt_the_master(world):
    world.pool.start()
    for slot in (0, 1, 0):
        worker = world.booting(slot)
        world.say(worker, Kind.BOOT_FAILED, b"ModuleNotFoundError: No module named 'app'")
        world.exit(worker, exited(3))
        world.tick(60)
    assert world.halted == ("workers fail to boot (3 in a row): "
                            "ModuleNotFoundError: No module named 'app'")
    assert world.pool.stopping and world.pool.by_pid.keys() == {world.slot(1)[0].pid}


def test_workers_failing_to_boot_never_stop_the_workers_that_serve(world, caplog):
    world.pool.start()
    healthy = world.slot(1)[0]
    world.ready(healthy)
    for _ in range(6):
        worker = world.booting(0)
        world.say(worker, Kind.BOOT_FAILED, b"ModuleNotFoundError: No module named 'app'")
        world.exit(worker, exited(3))
        for _ in range(4):  # past the backoff; the healthy one beats
            world.tick(10)
            world.beat(healthy)
    assert world.halted is None and not world.pool.stopping
    assert world.pool.serving == {1: healthy} and world.processes.signals == []
    assert world.booting(0)  # tried again, with the backoff
    assert ("workers fail to boot (6 in a row): ModuleNotFoundError: No module named 'app'; "
            "the 1 serving workers go on, slot 0 is tried again") in caplog.text


def test_workers_killed_by_a_signal_while_booting_are_respawned_and_never_halt(world):
    """SIGKILL from an operator, another process of the workers' user or the OOM killer:
    not the app's fault, so never a boot failure; the slot backs off as any crash."""
    world.pool.start()
    world.ready(world.slot(1)[0])
    for delay in (0.2, 0.4, 0.8, 1.6, 3.2, 6.4):
        world.exit(world.booting(0), killed_by(signal.SIGKILL))
        world.tick(delay - 0.01)
        assert world.pool.in_slot(0) == []
        world.tick(0.02)
    world.exit(world.slot(1)[0], killed_by(signal.SIGKILL))  # none serves now
    for _ in range(BOOT_FAILURE_LIMIT + 2):
        world.tick(60)
        world.exit(world.booting(0), killed_by(signal.SIGKILL))
    assert world.halted is None and not world.pool.stopping
    world.tick(60)
    world.ready(*world.pool.by_pid.values())
    assert sorted(world.pool.serving) == [0, 1]


def test_a_worker_that_gets_ready_resets_the_boot_failure_count(world):
    world.pool.start()
    world.ready(world.slot(1)[0])
    for _ in range(2):
        world.exit(world.booting(0), exited(3))
        world.tick(60)
    world.ready(world.booting(0))
    world.exit(world.pool.serving[0], exited(3))
    world.tick(60)
    for _ in range(2):
        world.exit(world.booting(0), exited(3))
        world.tick(60)
    assert world.halted is None and world.booting(0)


# --------------------------------------------------------------------- heartbeats


def test_a_silent_worker_is_late_then_killed_and_replaced(world):
    first, second = serving_world(world)
    world.tick(LATE_BEATS * HEARTBEAT + 0.1)
    world.beat(second)
    assert first.late and not second.late  # placement passes over it
    world.beat(first, sessions=3)
    assert not first.late and first.sessions == 3

    world.tick(TIMEOUT - 1)
    world.beat(second)
    world.tick(1.5)
    assert world.processes.signals == [(first.pid, signal.SIGKILL)] and first.killed
    world.tick(5)
    assert world.processes.signals == [(first.pid, signal.SIGKILL)]  # once
    world.exit(first, killed_by(signal.SIGKILL))
    world.tick()
    assert world.booting(0) and world.pool.restarts["timeout"] == 1


def test_workers_all_late_at_once_are_given_longer_before_they_are_killed(world, caplog):
    first, second = serving_world(world)
    world.tick(TIMEOUT + 1)  # both silent: the host's CPU, not one worker
    assert world.processes.signals == [] and first.late and second.late
    assert caplog.text.count("2 of 2 workers are late at once") == 1
    world.tick(TIMEOUT)
    world.beat(second)  # the host catches up: the one still silent goes at once
    world.tick(0.5)
    assert world.processes.signals == [(first.pid, signal.SIGKILL)]


def test_draining_workers_late_at_once_are_given_longer_too(caplog):
    """A rolling restart at scale: the old workers, closing their sessions, fall behind
    while the new ones keep time; killing them would drop all they have left at once."""
    world = World(graceful_timeout=TIMEOUT * 2)  # the drain outlasts the heartbeat timeout
    old0, old1 = serving_world(world)
    world.pool.roll()
    world.ready(world.booting(0))
    world.tick()
    world.ready(world.booting(1))
    assert old0.state is old1.state is State.DRAINING
    for _ in range(int(TIMEOUT) + 2):
        world.tick(1)
        for worker in world.pool.serving.values():
            world.beat(worker)
    assert world.processes.signals == [] and "2 of 4 workers are late at once" in caplog.text
    world.beat(old1)  # caught up: the one still silent goes at once
    world.tick(0.5)
    assert world.processes.signals == [(old0.pid, signal.SIGKILL)]
    world.close()


def test_workers_late_at_once_are_killed_at_last(world):
    first, second = serving_world(world)
    world.tick(SATURATED_GRACE * TIMEOUT + 1)
    assert sorted(world.processes.signals) == sorted([(first.pid, signal.SIGKILL),
                                                      (second.pid, signal.SIGKILL)])


def test_a_worker_not_ready_within_the_boot_timeout_is_killed_and_counts_as_a_failed_boot(
        world, caplog):
    world.pool.start()
    world.ready(world.slot(1)[0])
    stuck, serving = world.slot(0)[0], world.slot(1)[0]
    for _ in range(int(BOOT_TIMEOUT) - 1):
        world.tick(1)
        world.beat(serving)
    assert world.processes.signals == []
    world.tick(2)
    assert world.processes.signals == [(stuck.pid, signal.SIGKILL)]
    assert f"{stuck} killed with SIGKILL: not ready within 30 s (--boot-timeout)" in caplog.text
    world.exit(stuck, killed_by(signal.SIGKILL))
    world.exit(serving, killed_by(signal.SIGKILL))  # from outside: none serves now
    world.tick(60)
    assert sorted(world.states().values()) == [["booting"], ["booting"]]
    world.tick(BOOT_TIMEOUT + 1)
    for worker in list(world.pool.by_pid.values()):  # two more, and none serves
        assert worker.killed
        world.exit(worker, killed_by(signal.SIGKILL))
    assert world.halted == ("workers fail to boot (3 in a row): not ready within 30 s "
                            "(--boot-timeout)")


# --------------------------------------------------------- how many boot at once


def test_workers_boot_a_bounded_number_at_a_time(caplog):
    world = World(workers=11)
    try:
        bound = boot_concurrency(CPUS)
        assert bound == 4
        world.pool.start()
        assert len(world.processes.started) == bound
        assert oversubscribed(11, CPUS) in caplog.text
        while len(world.pool.serving) < 11:
            booting = [w for w in world.pool.by_pid.values() if w.state is State.BOOTING]
            assert 0 < len(booting) <= bound
            world.ready(booting[0])
            world.tick()
        assert len(world.processes.started) == 11
        world.pool.roll()  # its new worker boots in slot 0
        for slot in range(1, 6):
            world.exit(world.pool.serving[slot], killed_by(signal.SIGKILL))
        world.tick(1)  # past the respawns' backoff: five respawns wait for their turn
        booting = [w for w in world.pool.by_pid.values() if w.state is State.BOOTING]
        assert len(booting) == bound
        world.pool.resize(20)
        world.tick(1)
        assert len([w for w in world.pool.by_pid.values() if w.state is State.BOOTING]) == bound
    finally:
        world.close()


def test_a_count_far_above_the_cpus_is_warned_about():
    assert oversubscribed(8, 2) is None
    assert oversubscribed(500, 2) == (
        "500 workers on 2 CPUs: more than 4 per CPU compete for the CPU and memory (each is a "
        "process with its own event loop; one or two per CPU serve best); they boot 4 at a time")
    assert boot_concurrency(1) == 2 and boot_concurrency(16) == 32


def test_a_heartbeat_reports_a_full_worker_until_it_has_room(world):
    first, _second = serving_world(world)
    limit = world.pool._settings.worker_connections
    world.beat(first, connections=limit)
    assert first.full
    world.beat(first, connections=limit - 1)
    assert not first.full and first.connections == limit - 1


def test_a_worker_that_says_it_is_full_is_full_below_the_connection_limit(world):
    """A threading worker with every thread busy (--threads) says so in its heartbeat."""
    first, _second = serving_world(world)
    world.beat(first, connections=3, full=1)
    assert first.full and first.connections == 3
    world.beat(first, connections=3)
    assert not first.full


# ------------------------------------------------------------------------ draining


def test_a_draining_worker_leaves_when_its_sessions_end(world):
    old0, _old1 = serving_world(world)
    world.pool.roll()
    world.ready(world.booting(0))
    world.beat(old0, sessions=2)  # it keeps its sessions meanwhile
    world.tick(GRACEFUL)
    world.beat(old0)
    world.exit(old0, exited(0))
    assert old0.pid not in world.pool.by_pid and world.processes.signals == []
    assert world.pool.restarts["crash"] == 0


def test_a_draining_worker_is_killed_at_its_deadline(world):
    """The graceful timeout, then the spread of the closes, then a grace: then SIGKILL."""
    old0, _old1 = serving_world(world)
    world.pool.roll()
    world.ready(world.booting(0))
    for _ in range(int((GRACEFUL + SPREAD + DRAIN_GRACE) / HEARTBEAT) - 1):
        world.tick(HEARTBEAT)
        for worker in list(world.pool.by_pid.values()):
            world.beat(worker, sessions=1)
    assert world.processes.signals == []
    world.tick(HEARTBEAT)
    assert world.processes.signals == [(old0.pid, signal.SIGKILL)]


def test_a_graceful_stop_drains_everyone_and_replaces_nobody(world):
    first, second = serving_world(world)
    world.pool.stop(graceful=True)
    assert world.states() == {0: ["draining"], 1: ["draining"]}
    world.exit(first, killed_by(signal.SIGSEGV))
    world.tick(60)
    assert world.pool.in_slot(0) == [] and world.pool.restarts["crash"] == 0


def test_a_fast_stop_terminates_everyone(world):
    first, second = serving_world(world)
    world.pool.stop(graceful=False)
    assert sorted(world.processes.signals) == [(first.pid, signal.SIGTERM),
                                               (second.pid, signal.SIGTERM)]


def test_a_worker_ready_after_the_stop_began_drains_at_once(world):
    world.pool.start()
    world.pool.stop(graceful=True)
    late = world.slot(0)[0]
    world.ready(late)
    assert late.state is State.DRAINING and world.pool.serving == {}


# ------------------------------------------------------------ channels and sends


def test_write_interest_is_set_when_a_send_would_block_and_cleared_when_the_outbox_empties(world):
    first, _second = serving_world(world)
    packet = b"x" * (frames.MAX_FRAGMENT - 16)
    while not first.outbox:
        assert first.send(packet)
    assert world.watcher.events(first) == READ | WRITE  # the send asked for it by itself

    world.processes.read_all(first.pid)  # the worker reads: room again
    world.watcher.wake(first, WRITE)
    assert not first.outbox or world.watcher.events(first) == READ | WRITE
    while first.outbox:
        world.processes.read_all(first.pid)
        world.watcher.wake(first, WRITE)
    assert world.watcher.events(first) == READ


def test_a_send_to_a_full_outbox_fails_and_sends_nothing(world):
    first, _second = serving_world(world)
    packet = b"x" * (frames.MAX_FRAGMENT - 16)
    while len(first.outbox) < OUTBOX_LIMIT:
        assert first.send(packet)
    assert not first.send(b"one more")
    assert not first.send_message(Kind.DELIVER, b"a message")
    assert len(first.outbox) == OUTBOX_LIMIT


def test_a_message_that_does_not_fit_is_not_sent_in_part(world):
    first, _second = serving_world(world)
    packet = b"x" * (frames.MAX_FRAGMENT - 16)
    while len(first.outbox) < OUTBOX_LIMIT - 1:
        first.send(packet)
    assert not first.send_message(Kind.DELIVER, b"y" * (2 * frames.MAX_FRAGMENT))
    assert len(first.outbox) == OUTBOX_LIMIT - 1


def test_hand_offs_queued_for_a_dead_worker_are_routed_again(world):
    first, _second = serving_world(world)
    packet = b"x" * (frames.MAX_FRAGMENT - 16)
    while not first.outbox:
        first.send(packet)
    client, other = socket.socketpair()
    handoff = frames.handoff_packet(("10.0.0.7", 4242))
    assert first.send(handoff, os.dup(client.fileno()))
    world.exit(first, killed_by(signal.SIGKILL))
    assert [packet for packet, _fd in world.stranded] == [handoff]
    client.close()
    other.close()


def test_a_worker_that_breaks_the_protocol_is_killed(world):
    first, _second = serving_world(world)
    world.say(first, Kind.DELIVER, b"a master's message")
    assert world.processes.signals == [(first.pid, signal.SIGKILL)]
    assert world.watcher.events(first) is None  # not read any more


def test_publishes_go_to_the_relay(world):
    first, _second = serving_world(world)
    world.say(first, Kind.PUBLISH, b"payload")
    assert world.heard == [(Kind.PUBLISH, b"payload")]
