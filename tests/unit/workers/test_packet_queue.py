"""An eventlet worker's packet queues: FIFO, one hub timer per burst of puts, timeouts by
the second, task_done/join, and nothing left behind by a getter that is gone.

Green threads run on the test process's own eventlet hub (no monkey-patching); only
``eventlet.sleep(0)`` is used, which runs what is due and never waits; the deadlines
are checked on a test clock.
"""
from __future__ import annotations

import workers.eventlet.runtime  # noqa: F401 (first: it hushes eventlet's deprecation warning)

import eventlet
import pytest
from eventlet.hubs import get_hub

from workers.eventlet.packet_queue import Empty, PacketQueue, Waker, create_queue


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def run_due() -> None:
    """Let the hub run every green thread and timer that is due, twice over."""
    eventlet.sleep(0)
    eventlet.sleep(0)


def sweep(waker: Waker) -> None:
    """Run the waker's look at the deadlines now, from the hub as its timer would."""
    get_hub().schedule_call_global(0, waker._sweep)
    run_due()


def hub_timers() -> int:
    hub = get_hub()
    return len(hub.timers) + len(hub.next_timers)


def test_items_come_out_in_the_order_they_went_in():
    queue = PacketQueue(Waker(Clock()))
    for item in ("a", "b", "c"):
        queue.put(item)
    assert queue.qsize() == 3
    assert [queue.get(), queue.get_nowait(), queue.get(block=False)] == ["a", "b", "c"]
    assert queue.empty()


def test_a_get_that_may_not_wait_raises_empty():
    queue = PacketQueue(Waker(Clock()))
    with pytest.raises(Empty):
        queue.get(block=False)
    with pytest.raises(Empty):
        queue.get_nowait()


def test_a_waiting_getter_gets_the_item_put_later():
    queue = PacketQueue(Waker(Clock()))
    getter = eventlet.spawn(queue.get, timeout=45)
    run_due()
    queue.put("ping")
    assert getter.wait() == "ping"


def test_a_burst_of_puts_wakes_every_waiting_getter_with_one_hub_timer():
    waker = Waker(Clock())
    queues = [PacketQueue(waker) for _ in range(200)]
    getters = [eventlet.spawn(queue.get, timeout=45) for queue in queues]
    run_due()
    before = hub_timers()
    for n, queue in enumerate(queues):
        queue.put(n)
    assert hub_timers() == before + 1
    assert [getter.wait() for getter in getters] == list(range(200))


def test_a_getter_waiting_past_its_timeout_gets_empty_at_the_next_sweep():
    clock = Clock()
    waker = Waker(clock)
    slow, quick = PacketQueue(waker), PacketQueue(waker)
    long_wait = eventlet.spawn(slow.get, timeout=45)
    short_wait = eventlet.spawn(quick.get, timeout=5)
    run_due()
    clock.now += 5.5
    sweep(waker)  # the hub runs it each second; here at once, on the test's clock
    with pytest.raises(Empty):
        short_wait.wait()
    assert not long_wait.dead  # its 45 s have not passed
    slow.put("late")
    assert long_wait.wait() == "late"


def test_a_getter_that_got_its_item_is_not_woken_by_its_deadline():
    clock = Clock()
    waker = Waker(clock)
    queue = PacketQueue(waker)
    getter = eventlet.spawn(queue.get, timeout=5)
    run_due()
    queue.put("first")
    assert getter.wait() == "first"
    clock.now += 60
    sweep(waker)
    assert queue.empty() and not waker._deadlines


def test_a_getter_killed_while_waiting_leaves_nothing_behind():
    waker = Waker(Clock())
    queue = PacketQueue(waker)
    getter = eventlet.spawn(queue.get, timeout=45)
    run_due()
    getter.kill()
    assert queue._getters == [] and not waker._deadlines
    queue.put("for the next one")  # no one waits: no wake-up scheduled
    assert queue.get() == "for the next one"


def test_join_returns_once_every_item_put_is_done():
    queue = PacketQueue(Waker(Clock()))
    queue.put("a")
    queue.put("b")
    joined = eventlet.spawn(queue.join)
    run_due()
    assert not joined.dead
    queue.get()
    queue.task_done()
    run_due()
    assert not joined.dead
    queue.get()
    queue.task_done()
    joined.wait()
    queue.join()  # nothing unfinished: returns at once
    with pytest.raises(ValueError):
        queue.task_done()


def test_a_bounded_queue_is_eventlets_own():
    assert isinstance(create_queue(), PacketQueue)
    assert create_queue(maxsize=3).maxsize == 3
