"""The Engine.IO sessions' packet queues of an asyncio worker, without a task and a timer per
packet.

python-engineio's asyncio session writer waits for each packet with
``asyncio.wait_for(queue.get(), ping_interval + ping_timeout)``: a task for the ``get``, a
future, and a loop timer of 45 s, cancelled once the packet came but left in the loop's heap
until it is swept out, for every packet sent (every ping too). Measured on 10,000 waiting
writers given one packet each, ten times: 19.2–20.6 µs per delivery, 7.5–8.6 µs with the queue below
(docs/benchmarks.md).

Here (hand-written for that cost; swapped in by :func:`install`, in the worker only, as
:mod:`workers.pings` is) the sessions' queues are :class:`PacketQueue`, an
:class:`asyncio.Queue` whose :meth:`PacketQueue.get_within` waits the way ``get`` does (a
future in the queue's getters) and registers that future in a bucket of the second its
deadline falls in; one loop timer a second (:class:`Deadlines`), while any writer waits,
fails the futures of the seconds that have passed with :class:`TimeoutError`. A timeout so
fires up to one second late: Engine.IO's is a safety net of 45 s, not a clock. The session
class's ``poll`` (:func:`poll`) is python-engineio's with that wait.

A queue that is given a ``maxsize`` (an app's own use of ``create_queue``) is asyncio's.
"""
from __future__ import annotations

import asyncio
import weakref
from typing import Any

from engineio import exceptions

from ..deadlines import SecondBuckets

SWEEP_INTERVAL = 1.0
"""Seconds between two looks at the waiting writers' deadlines (while any writer waits)."""


class Deadlines:
    """The deadlines of the waits of one event loop, by the second they fall in."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._waits: SecondBuckets[asyncio.Future, None] = SecondBuckets()
        """The futures waited for, by the second (the loop's clock) their wait ends in."""
        self._sweeping = False

    def add(self, future: asyncio.Future, timeout: float) -> int:
        """Fail ``future`` with :class:`TimeoutError` about ``timeout`` seconds from now
        unless it is done by then; the key to :meth:`discard` it with once it is."""
        second = self._waits.add(future, None, self._loop.time() + timeout)
        if not self._sweeping:
            self._sweeping = True
            self._loop.call_later(SWEEP_INTERVAL, self._sweep)
        return second

    def discard(self, future: asyncio.Future, second: int) -> None:
        """``future``'s wait ended (it is done, or its waiter went away)."""
        self._waits.discard(future, second)

    def _sweep(self) -> None:
        """Fail the waits whose second has passed; look again in a second while any waits."""
        for future, _ in self._waits.pop_due(self._loop.time()):
            if not future.done():
                future.set_exception(TimeoutError())
        if self._waits:
            self._loop.call_later(SWEEP_INTERVAL, self._sweep)
        else:
            self._sweeping = False


_DEADLINES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Deadlines] = \
    weakref.WeakKeyDictionary()


def deadlines(loop: asyncio.AbstractEventLoop) -> Deadlines:
    """The :class:`Deadlines` of ``loop``."""
    found = _DEADLINES.get(loop)
    if found is None:
        found = _DEADLINES[loop] = Deadlines(loop)
    return found


class PacketQueue(asyncio.Queue):
    """An :class:`asyncio.Queue` with a wait that needs no task nor timer of its own."""

    async def get_within(self, timeout: float) -> Any:
        """The next item, waiting for it up to ``timeout`` seconds (and up to
        :data:`SWEEP_INTERVAL` more); :class:`TimeoutError` then. As ``get`` in every other
        way (the same getters, so ``put`` wakes it as it wakes ``get``)."""
        while self.empty():
            loop = self._get_loop()  # type: ignore[attr-defined]
            getter = loop.create_future()
            self._getters.append(getter)  # type: ignore[attr-defined]
            waits = deadlines(loop)
            second = waits.add(getter, timeout)
            try:
                await getter
            except BaseException:  # as asyncio.Queue.get does, TimeoutError included
                getter.cancel()
                try:
                    self._getters.remove(getter)  # type: ignore[attr-defined]
                except ValueError:
                    pass
                if not self.empty() and not getter.cancelled():
                    self._wakeup_next(self._getters)  # type: ignore[attr-defined]
                raise
            finally:
                waits.discard(getter, second)
        return self.get_nowait()


def create_queue(*args: Any, **kwargs: Any) -> asyncio.Queue:
    """The Engine.IO server's queues: a :class:`PacketQueue`, or asyncio's own for a bounded
    one (``maxsize``)."""
    if args or kwargs:
        return asyncio.Queue(*args, **kwargs)
    return PacketQueue()


async def poll(self: Any) -> list:
    """python-engineio's ``AsyncSocket.poll`` (the packets to send, waiting for the first up
    to ping interval + ping timeout), with :meth:`PacketQueue.get_within` as its wait."""
    queue = self.queue
    timeout = self.server.ping_interval + self.server.ping_timeout
    try:
        if isinstance(queue, PacketQueue):
            packets = [await queue.get_within(timeout)]
        else:
            packets = [await asyncio.wait_for(queue.get(), timeout)]
        queue.task_done()
    except (asyncio.TimeoutError, asyncio.CancelledError):
        raise exceptions.QueueEmpty() from None
    if packets == [None]:
        return []
    while True:
        try:
            pkt = queue.get_nowait()
            queue.task_done()
            if pkt is None:
                queue.put_nowait(None)
                break
            packets.append(pkt)
        except asyncio.QueueEmpty:
            break
    return packets


def install(eio_server: Any, session_class: type) -> None:
    """Make ``eio_server`` (a python-engineio AsyncServer) queue its sessions' packets in
    :class:`PacketQueue`, and ``session_class`` (``AsyncSocket``) wait for them with
    :func:`poll`."""
    eio_server.create_queue = create_queue
    session_class.poll = poll
