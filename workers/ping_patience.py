"""Engine.IO's ping timeout, not counting the time the worker's own loop ran late.

python-engineio closes a client whose answer to a ping has not been read within
``ping_timeout`` (20 s) of the ping being *queued* (``Socket._send_ping``), and checks that
on every packet it sends. A worker that is behind (a storm of reconnects after another
worker died, a broadcast to everyone, a host short of cores) writes its pings late and
reads the answers late: it then closes clients that did answer, whose answers sit unread
in its sockets, and they reconnect onto a host already behind. Measured at 100,000 clients
on 8 workers of a 2-core host: one worker killed, 73,137 clients of the other seven closed
so within two minutes, and the host never recovered (docs/benchmarks.md, "Storms").

The heartbeat tells how late the worker's loop runs: it is meant to run every
``heartbeat_interval`` (1 s) from the loop that serves the clients (every runtime's
:meth:`~workers.boot.Runtime.beat`), so how much later it runs is the loop's lateness
(:class:`LoopLag`). :func:`install` makes the ping timeout count only the time the loop was
on time since the ping: a client that does not answer is still closed, ``ping_timeout``
of punctual time after its ping, however late the worker was meanwhile.
"""
from __future__ import annotations

import bisect
import collections
import time
from typing import Any

KEPT = 600.0
"""Seconds of lateness history kept: beyond ping_interval + ping_timeout of any app."""


class LoopLag:
    """How late the worker's loop has run, from the beats it makes every ``interval``.

    Times are ``time.time()``, as python-engineio's ``last_ping``.
    """

    def __init__(self, interval: float, now: float | None = None) -> None:
        self._interval = interval
        self._last = time.time() if now is None else now
        self._total = 0.0
        self._history: collections.deque[tuple[float, float]] = collections.deque(
            maxlen=int(KEPT / interval) + 1)
        """(when a beat ran, the lateness summed up to it), oldest first."""

    def beat(self, now: float | None = None) -> None:
        """The beat ran (at ``now``): what it came later than due is the loop's lateness."""
        now = time.time() if now is None else now
        self._total += max(0.0, now - self._last - self._interval)
        self._last = now
        self._history.append((now, self._total))

    def late_since(self, since: float, now: float | None = None) -> float:
        """Seconds the loop ran late from ``since`` to ``now``: the beats' lateness since,
        and how overdue the next beat is now (a loop behind at this moment)."""
        now = time.time() if now is None else now
        overdue = max(0.0, now - self._last - self._interval)
        history = self._history
        index = bisect.bisect_right(history, since, key=lambda entry: entry[0])
        if index:
            before = history[index - 1][1]
        elif history and len(history) == history.maxlen:
            before = history[0][1]  # older than what is kept: count from there
        else:
            before = 0.0
        return self._total - before + overdue


def install(lag: LoopLag) -> None:
    """Make python-engineio's ping timeout (sync and asyncio sockets) discount ``lag``.

    A client inside ``ping_timeout`` once the loop's lateness since its ping is taken off
    is left alone; anything else goes to python-engineio's own check (which also raises
    for a closed socket), unchanged.
    """
    from engineio import async_socket, socket

    def patient(sock: Any) -> bool:
        """Not closed, and inside the ping timeout: plainly, or once the lateness since
        its ping is taken off (looked up only then: every packet sent comes here, and
        the look-up first cost 3.1 µs per packet, against 1.0 for python-engineio's)."""
        last_ping = sock.last_ping
        if sock.closed:
            return False
        if not last_ping:
            return True
        waited = time.time() - last_ping
        timeout = sock.server.ping_timeout
        return waited <= timeout or waited - lag.late_since(last_ping) <= timeout

    sync_check = getattr(socket.Socket.check_ping_timeout, "impatient", socket.Socket.check_ping_timeout)
    async_check = getattr(async_socket.AsyncSocket.check_ping_timeout, "impatient",
                          async_socket.AsyncSocket.check_ping_timeout)

    def check_ping_timeout(self: Any) -> bool:
        return patient(self) or sync_check(self)

    async def async_check_ping_timeout(self: Any) -> bool:
        return patient(self) or await async_check(self)

    check_ping_timeout.impatient = sync_check  # type: ignore[attr-defined]
    async_check_ping_timeout.impatient = async_check  # type: ignore[attr-defined]
    socket.Socket.check_ping_timeout = check_ping_timeout  # type: ignore[method-assign]
    async_socket.AsyncSocket.check_ping_timeout = async_check_ping_timeout  # type: ignore[method-assign]
