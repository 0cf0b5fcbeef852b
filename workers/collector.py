"""A worker's full garbage collections, paced by the worker instead of by its heap's growth.

CPython starts a full collection (a walk over every object the process tracks) each time
the objects that survived the young collections since the last one reach a quarter of the
objects it holds. A worker holding thousands of idle websockets makes such survivors at a
steady rate: each Engine.IO ping allocates a green thread, timers and frames that live the
25 s of the ping interval. Measured on one eventlet worker holding 8,000 idle clients
(1.19 million objects): a full collection every 30 s, 0.93 s each, that found no garbage;
the collector had 42 % of the worker's CPU samples at idle, and every full collection
stopped every client of the worker for that long (docs/benchmarks.md, "What the scale runs found").

So once booted, the worker takes the full collections over (:class:`Collector`): CPython
still collects the young generations as it always does (a cycle that dies young is freed
at once), and the worker runs a full collection from its heartbeat every
:data:`FULL_EVERY` seconds, or less often when one takes long, so that the full
collections cost at most :data:`PAUSE_SHARE` of the worker's time. What the app and the
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

FULL_EVERY = 60.0
"""Seconds at least between two full collections."""

PAUSE_SHARE = 0.02
"""The largest share of a worker's time its full collections may take: one that took
``d`` seconds waits ``d / PAUSE_SHARE`` seconds for the next (1.5 s at 12,500 idle
clients: the next 75 s later)."""

NEVER = 1 << 30
"""The oldest generation's threshold that CPython never reaches (it counts the young
collections since the last full one)."""


class Collector:
    """The worker's full collections, run from its heartbeat (:meth:`tick`).

    :param clock: seconds, monotonic.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._thresholds = gc.get_threshold()
        """The thresholds before the app was loaded: CPython's, or the template's."""
        self._due: float | None = None
        """When the next full collection is due; None while CPython keeps them."""

    def take_over(self) -> None:
        """After the boot: freeze what is allocated so far, and take the full collections
        over, unless the app set its own thresholds or turned the collector off."""
        gc.freeze()
        if not gc.isenabled() or gc.get_threshold() != self._thresholds:
            log.debug("worker %d: the app set its own garbage collection", os.getpid())
            return
        young, middle, _oldest = self._thresholds
        gc.set_threshold(young, middle, NEVER)
        self._due = self._clock() + FULL_EVERY

    def tick(self) -> None:
        """Run a full collection if one is due (called with every heartbeat)."""
        if self._due is None or self._clock() < self._due:
            return
        started = self._clock()
        gc.collect()
        ended = self._clock()
        self._due = ended + max(FULL_EVERY, (ended - started) / PAUSE_SHARE)
