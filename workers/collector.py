"""A worker's full garbage collections, paced by what they cost instead of by its heap's growth.

CPython starts a full collection (a walk over every object the process tracks) each time
the objects that survived the young collections since the last one reach a quarter of the
objects it holds. A worker holding thousands of idle websockets makes such survivors at a
steady rate: each Engine.IO ping allocates a green thread, timers and frames that live the
25 s of the ping interval. Measured on one eventlet worker holding 8,000 idle clients
(1.19 million objects): a full collection every 30 s, 0.93 s each, that found no garbage;
the collector had 42 % of the worker's CPU samples at idle, and every full collection
stopped every client of the worker for that long (docs/benchmarks.md, "What the scale
runs found").

So once booted, a worker watches its full collections (:class:`Collector`): while they are
short, CPython starts them as it always does; once one has taken :data:`LONG_PAUSE` or more,
the worker starts them itself, from its heartbeat, when objects have reached the oldest
generation since the last one and the last one's time is at most :data:`PAUSE_SHARE` of
the time since it ended: at 12,500 idle clients, one every 75 s instead of every 30 s. When
one is short again (the clients have gone), CPython has them back. The young generations
are CPython's throughout (a cycle that dies young is freed at once). What the app and the
boot allocated is frozen first (:func:`gc.freeze`), as the template froze what the
libraries allocated: it lives as long as the worker, and no full collection walks it.
An app that set its own thresholds, or turned the collector off, keeps its choice.
"""
from __future__ import annotations

import gc
import logging
import os
import time
from typing import Callable

log = logging.getLogger("sticky_cluster.worker")

LONG_PAUSE = 0.1
"""Seconds of a full collection that clients notice (a ping answered late, a broadcast held
back): from one that long on, the worker paces them; from one half as long, CPython again."""

PAUSE_SHARE = 0.02
"""The largest share of a worker's time its paced full collections take: one that took
``d`` seconds waits ``d / PAUSE_SHARE`` seconds for the next (1.5 s at 12,500 idle
clients: the next 75 s later)."""

NEVER = 1 << 30
"""The oldest generation's threshold that CPython never reaches (it counts the young
collections since the last full one)."""


class Collector:
    """The worker's full collections: CPython's while short, then paced from the heartbeat
    (:meth:`tick`).

    :param clock: seconds, monotonic.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._thresholds = gc.get_threshold()
        """The thresholds before the app was loaded: CPython's, or the template's."""
        self._due: float | None = None
        """When the next paced full collection may run; None while CPython starts them."""
        self._started = 0.0
        """When CPython's full collection under way started."""

    def take_over(self) -> None:
        """After the boot: collect once and freeze what is left, then watch the full
        collections, unless the app set its own thresholds or turned the collector off."""
        ours = gc.isenabled() and gc.get_threshold() == self._thresholds
        gc.collect()  # what the app's import left over is not frozen for good
        gc.freeze()
        if not ours:
            log.debug("worker %d: the app set its own garbage collection", os.getpid())
            return
        gc.callbacks.append(self._watch)

    def tick(self) -> None:
        """Run a paced full collection if one is due (called with every heartbeat):
        objects reached the oldest generation since the last (a collection of the middle
        one moved them there), and the last took at most its share of the time since."""
        if self._due is None or self._clock() < self._due or not gc.get_count()[2]:
            return
        started = self._clock()
        gc.collect()
        ended = self._clock()
        if ended - started < LONG_PAUSE / 2:  # the heap is small again
            self._due = None
            gc.set_threshold(*self._thresholds)
        else:
            self._due = ended + (ended - started) / PAUSE_SHARE

    def _watch(self, phase: str, info: dict) -> None:
        """``gc.callbacks``: time CPython's full collections; pace them once one is long."""
        if info["generation"] != 2 or self._due is not None:
            return
        if phase == "start":
            self._started = self._clock()
            return
        took = self._clock() - self._started
        if took >= LONG_PAUSE:
            young, middle, _oldest = self._thresholds
            gc.set_threshold(young, middle, NEVER)
            self._due = self._clock() + took / PAUSE_SHARE
