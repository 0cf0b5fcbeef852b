"""Calls due at a time, run by the threading worker's poller thread.

The threading worker's loop (:class:`workers.threading.server.Server`'s poller) stands in
for eventlet's hub and asyncio's event loop as the owner of timers: :meth:`Timers.call_later`
may be called from any thread, and the poller runs what is due between two waits of its
selector. It is what :mod:`workers.pings` needs of a loop: without it, python-engineio's
threading mode parks a thread for every ping of every session (``server.sleep`` of the ping
interval in a background task), a third of the threads of a worker holding websockets.

What runs here runs on the poller, which must not wait: it only queues (a ping is a ``put``
into its session's unbounded queue).
"""
from __future__ import annotations

import heapq
import itertools
import logging
import os
import threading
import time
from typing import Any, Callable

log = logging.getLogger("sticky_cluster.worker")


class Timers:
    """A heap of calls by their due time (``time.monotonic``).

    :param wake: wakes the poller (any thread), so that it sees a call due before the one
                 it waits for.
    """

    def __init__(self, wake: Callable[[], None]) -> None:
        self._wake = wake
        self._lock = threading.Lock()
        self._due: list[tuple[float, int, Callable[..., Any], tuple]] = []
        self._order = itertools.count()

    def call_later(self, seconds: float, function: Callable[..., Any], *args: Any) -> None:
        """Call ``function(*args)`` on the poller ``seconds`` from now (any thread)."""
        when = time.monotonic() + seconds
        with self._lock:
            first = not self._due or when < self._due[0][0]
            heapq.heappush(self._due, (when, next(self._order), function, args))
        if first:
            self._wake()

    def next_due(self) -> float | None:
        """When the first call is due (``time.monotonic``), or None when none waits."""
        with self._lock:
            return self._due[0][0] if self._due else None

    def run_due(self, now: float) -> None:
        """Run every call due by ``now`` (the poller), in the order of their due times."""
        while True:
            with self._lock:
                if not self._due or self._due[0][0] > now:
                    return
                _when, _order, function, args = heapq.heappop(self._due)
            try:
                function(*args)
            except Exception:  # noqa: BLE001 - a timer must not end the poller
                log.exception("worker %d: a timer's call failed", os.getpid())
