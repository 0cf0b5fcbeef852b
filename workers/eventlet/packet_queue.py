"""The Engine.IO sessions' packet queues of an eventlet worker, without a hub timer per packet.

python-engineio gives each session an ``eventlet.queue.Queue``: the packets a server emit
puts in it are taken by the session's writer (websocket) or its long-poll. With eventlet's
queue, every ``put`` to a waiting session schedules a hub timer of its own to wake it, and
every wait of a writer (``get`` with Engine.IO's timeout of ping interval + ping timeout)
makes a :class:`eventlet.Timeout`, a hub timer and a waiter object that stay in the hub's
heap for the 45 s of the timeout even once cancelled. A broadcast to 9,500 clients of a
worker so made ~40,000 objects that lived long enough to be walked by the young garbage
collections, and then by the full ones: measured on the scale bench, half of the worker's
CPU during broadcasts went to garbage collection (docs/benchmarks.md).

Here (hand-written for that cost; swapped in as the Engine.IO server's ``queue`` class by
:func:`install`, not a fork of either library) the sessions share one :class:`Waker`:

- the getters a burst of ``put`` calls wakes are woken by **one** hub timer, in order;
- a ``get`` with a timeout registers its greenlet in a bucket of the second its deadline
  falls in; one hub timer a second, while any getter waits, throws
  :class:`eventlet.queue.Empty` into those whose second has passed. A timeout so fires up
  to one second late: Engine.IO's is a safety net of 45 s, not a clock.

A queue that is given a ``maxsize`` (an app's own use of ``create_queue``) is eventlet's.
"""
from __future__ import annotations

import collections
import time
from typing import Any, Callable

import eventlet.event
import eventlet.queue
from eventlet.hubs import get_hub
from greenlet import getcurrent, greenlet

from ..deadlines import SecondBuckets

Empty = eventlet.queue.Empty

SWEEP_INTERVAL = 1.0
"""Seconds between two looks at the getters' deadlines (while any getter has one)."""


class Waker:
    """Wakes the getters of every :class:`PacketQueue` of the process, from the hub.

    :param clock: seconds, monotonic.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._ready: list[PacketQueue] = []
        """Queues given an item while a getter waited, since the wake-up timer was set."""
        self._deadlines: SecondBuckets[greenlet, PacketQueue] = SecondBuckets()
        """The getters with a timeout, by the second (monotonic) it ends in."""
        self._sweeping = False

    def wake(self, queue: PacketQueue) -> None:
        """``queue`` has an item and a waiting getter: wake it (with the others of this burst)."""
        if not self._ready:
            get_hub().schedule_call_global(0, self._wake_ready)
        self._ready.append(queue)

    def _wake_ready(self) -> None:
        ready, self._ready = self._ready, []
        for queue in ready:
            getters = queue._getters
            if getters and queue._items:
                getters[0].switch()  # it runs until it waits again

    def watch(self, getter: greenlet, queue: PacketQueue, timeout: float) -> int:
        """Throw :class:`Empty` into ``getter`` if it still waits on ``queue`` once
        ``timeout`` seconds have passed; the key to :meth:`unwatch` it with."""
        second = self._deadlines.add(getter, queue, self._clock() + timeout)
        if not self._sweeping:
            self._sweeping = True
            get_hub().schedule_call_global(SWEEP_INTERVAL, self._sweep)
        return second

    def unwatch(self, getter: greenlet, second: int) -> None:
        """``getter`` no longer waits (it got an item, or its wait ended otherwise)."""
        self._deadlines.discard(getter, second)

    def _sweep(self) -> None:
        for getter, queue in self._deadlines.pop_due(self._clock()):
            if getter in queue._getters and not getter.dead:
                getter.throw(Empty)
        if self._deadlines:
            get_hub().schedule_call_global(SWEEP_INTERVAL, self._sweep)
        else:
            self._sweeping = False


WAKER = Waker()
"""The process's one :class:`Waker` (a worker runs one hub)."""


class PacketQueue:
    """An unbounded green FIFO queue with ``task_done``/``join``, the part of
    :class:`eventlet.queue.Queue` python-engineio uses, woken by :data:`WAKER`."""

    __slots__ = ("_waker", "_items", "_getters", "_unfinished", "_all_done")  # one per session

    def __init__(self, waker: Waker = WAKER) -> None:
        self._waker = waker
        self._items: collections.deque[Any] = collections.deque()
        self._getters: list[greenlet] = []
        self._unfinished = 0
        self._all_done: eventlet.event.Event | None = None

    def qsize(self) -> int:
        return len(self._items)

    def empty(self) -> bool:
        return not self._items

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """Add ``item`` (never blocks: the queue is unbounded)."""
        self._items.append(item)
        self._unfinished += 1
        if self._getters:
            self._waker.wake(self)

    def put_nowait(self, item: Any) -> None:
        self.put(item)

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        """The first item; waits for one when ``block`` (up to ``timeout`` seconds, then
        raises :class:`Empty`, as does a get that may not wait)."""
        if self._items:
            return self._items.popleft()
        if not block:
            raise Empty
        current = getcurrent()
        second = self._waker.watch(current, self, timeout) if timeout is not None else None
        self._getters.append(current)
        try:
            hub = get_hub()
            while not self._items:
                hub.switch()
            return self._items.popleft()
        finally:
            self._getters.remove(current)
            if second is not None:
                self._waker.unwatch(current, second)
            if self._items and self._getters:
                self._waker.wake(self)  # an item this getter leaves behind is the next one's

    def get_nowait(self) -> Any:
        return self.get(False)

    def task_done(self) -> None:
        """One item taken is dealt with (see :meth:`join`)."""
        if self._unfinished <= 0:
            raise ValueError("task_done() called too many times")
        self._unfinished -= 1
        if not self._unfinished and self._all_done is not None:
            self._all_done.send()
            self._all_done = None

    def join(self) -> None:
        """Wait until every item put has been taken and marked :meth:`task_done`."""
        if self._unfinished:
            if self._all_done is None:
                self._all_done = eventlet.event.Event()
            self._all_done.wait()


def create_queue(*args: Any, **kwargs: Any) -> PacketQueue | eventlet.queue.Queue:
    """The Engine.IO server's ``queue`` class: a :class:`PacketQueue`, or eventlet's own
    for a bounded one (``maxsize``)."""
    if args or kwargs:
        return eventlet.queue.Queue(*args, **kwargs)
    return PacketQueue()


def install(eio_server: Any) -> None:
    """Make ``eio_server`` (a python-engineio Server) queue its sessions' packets in
    :class:`PacketQueue`."""
    eio_server._async = {**eio_server._async, "queue": create_queue}  # noqa: SLF001 - no public setter
