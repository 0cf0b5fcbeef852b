"""An asyncio worker's packet queues: a wait that puts wake as they wake ``get``, timeouts by
the second from one loop timer, nothing left behind by a wait that is cancelled, and
python-engineio's ``poll`` on top. Deadlines are checked on a loop of the test's (its
clock and its timers); the rest on a real event loop that never waits."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from engineio import exceptions

from workers.asyncio.packet_queue import (SWEEP_INTERVAL, Deadlines, PacketQueue,
                                          create_queue, deadlines, poll)


class Loop:
    """The two things :class:`Deadlines` asks of a loop: its clock and a timer."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.timers: list[tuple[float, object]] = []

    def time(self) -> float:
        return self.now

    def call_later(self, delay: float, callback) -> None:
        self.timers.append((self.now + delay, callback))

    def run_timers(self) -> None:
        due = [t for t in self.timers if t[0] <= self.now]
        self.timers = [t for t in self.timers if t[0] > self.now]
        for _, callback in due:
            callback()


def test_a_put_wakes_a_waiting_writer_and_items_keep_their_order():
    async def scenario():
        queue = PacketQueue()
        waiting = asyncio.ensure_future(queue.get_within(45))
        await asyncio.sleep(0)
        queue.put_nowait("a")
        queue.put_nowait("b")
        return await waiting, queue.get_nowait()

    assert asyncio.run(scenario()) == ("a", "b")


def test_thousands_of_waiting_writers_share_one_loop_timer():
    async def scenario():
        loop = asyncio.get_running_loop()
        queues = [PacketQueue() for _ in range(1000)]
        waits = [asyncio.ensure_future(q.get_within(45)) for q in queues]
        await asyncio.sleep(0)
        timers = len(loop._scheduled)  # noqa: SLF001 - the loop's timer heap
        for queue in queues:
            queue.put_nowait(b"x")
        got = await asyncio.gather(*waits)
        return timers, got

    timers, got = asyncio.run(scenario())
    assert timers == 1 and got == [b"x"] * 1000


def test_a_wait_fails_with_timeout_error_once_its_second_has_passed():
    loop = Loop()
    times = Deadlines(loop)  # type: ignore[arg-type]
    futures_loop = asyncio.new_event_loop()
    future, other = futures_loop.create_future(), futures_loop.create_future()
    times.add(future, 2.5)
    other_second = times.add(other, 10)
    assert len(loop.timers) == 1  # one sweep timer, whatever the number of waits
    loop.now += SWEEP_INTERVAL
    loop.run_timers()
    assert not future.done()
    loop.now += 2.0  # 1003.0 >= ceil(1002.5)
    loop.run_timers()
    assert isinstance(future.exception(), TimeoutError) and not other.done()
    other.set_result(None)  # a put came: its waiter takes it out
    times.discard(other, other_second)
    loop.now += 10
    loop.run_timers()
    assert other.result() is None and loop.timers == []  # nothing waits: no more timers
    futures_loop.close()


def test_a_cancelled_wait_leaves_no_getter_and_no_deadline_behind():
    async def scenario():
        queue = PacketQueue()
        waiting = asyncio.ensure_future(queue.get_within(45))
        await asyncio.sleep(0)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        waits = deadlines(asyncio.get_running_loop())._waits  # noqa: SLF001
        return len(queue._getters), bool(waits)  # noqa: SLF001

    assert asyncio.run(scenario()) == (0, False)


def test_a_bounded_queue_is_asyncio_s_own():
    assert type(create_queue(maxsize=3)) is asyncio.Queue
    assert type(create_queue()) is PacketQueue


def _session(queue: asyncio.Queue, wait: float = 45.0) -> SimpleNamespace:
    return SimpleNamespace(queue=queue, server=SimpleNamespace(ping_interval=wait / 2,
                                                               ping_timeout=wait / 2))


def test_poll_gives_every_packet_queued_and_an_empty_list_at_the_end():
    async def scenario():
        queue = PacketQueue()
        for item in ("p1", "p2", None):
            queue.put_nowait(item)
        first = await poll(_session(queue))
        second = await poll(_session(queue))
        return first, second

    assert asyncio.run(scenario()) == (["p1", "p2"], [])


def test_poll_raises_queue_empty_when_nothing_comes_within_the_timeout():
    async def scenario():
        await poll(_session(PacketQueue(), wait=0.0))

    with pytest.raises(exceptions.QueueEmpty):
        asyncio.run(scenario())
