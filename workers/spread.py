"""Closing the sessions a drain leaves, spread over a window instead of in one instant.

When a draining worker reaches its graceful timeout with sessions still open, every
client it closes reconnects (to the slot's new worker, to another host) a moment later.
Closed all at once they would all come back in the same second; :class:`Spread` closes
them evenly over ``--drain-spread`` seconds, so whoever takes them over sees a bounded
reconnect rate. Pure bookkeeping, shared by every runtime: the runtime sleeps its own
way between two batches (:data:`TICK`) and closes each session its own way.
"""
from __future__ import annotations

import logging
import math
import os
import time
from typing import Callable, Generic, Iterator, TypeVar

log = logging.getLogger("sticky_cluster.worker")

TICK = 0.05
"""Seconds between two batches of closes."""

Item = TypeVar("Item")


class Spread(Generic[Item]):
    """``items`` to close evenly over ``window`` seconds from ``start`` (monotonic seconds).

    :meth:`due` hands out, at each call, the items whose turn has come since the last
    call: by ``start + window`` every item has been handed out once. A window of 0 hands
    out everything at once.
    """

    def __init__(self, items: list[Item], window: float, start: float) -> None:
        self._items = items
        self._window = window
        self._start = start
        self._given = 0

    @property
    def left(self) -> int:
        """Items not handed out yet."""
        return len(self._items) - self._given

    def due(self, now: float) -> list[Item]:
        """The items to close now (possibly none)."""
        elapsed = now - self._start
        if self._window <= 0 or elapsed >= self._window:
            count = len(self._items)
        else:
            count = min(len(self._items), math.ceil(len(self._items) * elapsed / self._window))
        batch = self._items[self._given:count]
        self._given = max(self._given, count)
        return batch

    def pause(self, now: float) -> float:
        """Seconds to sleep before the next call to :meth:`due` (0 when nothing is left)."""
        return 0.0 if not self.left else max(0.0, min(TICK, self._start + self._window - now))


def batches(items: list[Item], window: float,
            clock: Callable[[], float]) -> Iterator[tuple[list[Item], float]]:
    """``(batch to close now, seconds to sleep after it)`` from now until every item of
    ``items`` was handed out, ``window`` seconds later."""
    spread = Spread(items, window, clock())
    while spread.left:
        now = clock()
        yield spread.due(now), spread.pause(now)



def log_closing(count: int, window: float) -> None:
    """Say, once, that the drain closes ``count`` sessions over ``window`` seconds."""
    if count:
        log.info("worker %d closes %d sessions at the graceful timeout, over %g s",
                 os.getpid(), count, window)


def close_green(sockets: dict, window: float, sleep: Callable[[float], None]) -> None:
    """Close the Engine.IO sessions ``sockets`` holds (``server.eio.sockets`` of a green
    or threading runtime), spread evenly over ``window`` seconds; ``sleep`` is the runtime's."""
    log_closing(len(sockets), window)
    for batch, pause in batches(list(sockets.values()), window, time.monotonic):
        for eio_socket in batch:
            if not eio_socket.closed:  # it may have ended by itself meanwhile
                eio_socket.close(wait=False, abort=True)
        sleep(pause)
