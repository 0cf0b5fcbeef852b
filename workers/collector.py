"""A worker's full garbage collections: once they are long, they leave out what has lived
through one, and walk everything only when the worker's memory per session has grown.

CPython starts a full collection (a walk over every object the process tracks) each time
the objects that survived the young collections since the last one reach a quarter of the
objects it holds. A worker holding thousands of idle websockets holds ~120 tracked objects
per client, and each full collection walks all of them and stops every client of the
worker meanwhile: 0.93 s over 1.19 million objects at 8,000 clients, measured, none of
them garbage (docs/benchmarks.md, "What the scale runs found"). A broadcast that meets one
reaches that worker's clients that much later.

So once booted, a worker watches its full collections (:class:`Collector`). While they are
short, they stay CPython's as they are. Once one has taken :data:`LONG_PAUSE` or more, the
worker *holds*: what survives each full collection is frozen right after it
(:func:`gc.freeze`), so that the next one walks only what came since, a few thousand
objects. What is frozen and later dies without a cycle is freed as ever (reference counts);
a cycle of frozen objects (a closed session's, an app's) is freed only by a collection of
everything, which the worker starts itself, from its heartbeat (:meth:`Collector.tick`),
when its resident memory per session has grown by :data:`GROWTH` over the least it was
since the last one, and at most :data:`PAUSE_SHARE` of its time. Clients that connect make
the memory per session fall, clients held idle leave it as it is: neither costs such a
walk; garbage does (clients that come and go, clients that leave), one walk for each
quarter more.

What the app and the boot allocated is frozen first, as the template froze what the
libraries allocated: it lives as long as the worker. A collection of everything unfreezes
those too, so a holding worker's first one copies the pages of the template's objects that
it had shared (tens of MB; a worker holds hundreds by then). An app that set its own
thresholds, or turned the collector off, keeps its choice.
"""
from __future__ import annotations

import gc
import logging
import math
import os
import time
from typing import Callable

from cluster.protocol.resident import resident_bytes

log = logging.getLogger("sticky_cluster.worker")

LONG_PAUSE = 0.1
"""Seconds of a full collection that clients notice (a ping answered late, a broadcast held
back): from one that long on, the worker holds (it freezes what survives each)."""

PAUSE_SHARE = 0.02
"""The largest share of a worker's time its collections of everything take: one that took
``d`` seconds waits ``d / PAUSE_SHARE`` seconds for the next (1.5 s at 12,500 clients: at
least 75 s)."""

GROWTH = 1.25
"""A holding worker collects everything once its resident memory per session has reached
this many times the least it was since the last such collection: a quarter more (CPython's
own rule) that the sessions held do not explain, as clients connect and the memory per
session falls."""


class Collector:
    """The worker's full collections: CPython's while short, then each walks only what came
    since the last; everything is walked when the memory per session grew (:meth:`tick`).

    :param clock: seconds, monotonic.
    :param resident: bytes of resident memory of the worker; None when unknown (then every
        tick counts as grown: collections of everything at the pace alone).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 resident: Callable[[], int | None] = resident_bytes) -> None:
        self._clock = clock
        self._resident = resident
        self._thresholds = gc.get_threshold()
        """The thresholds before the app was loaded: CPython's, or the template's."""
        self.holding = False
        """Whether the worker freezes what survives each full collection."""
        self._started = 0.0
        """When the full collection under way started."""
        self._due = 0.0
        """When the next collection of everything may start (monotonic)."""
        self._least = math.inf
        """The least resident bytes per session since the last collection of everything:
        what the sessions themselves cost, without the garbage that came since."""

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

    def tick(self, sessions: int) -> None:
        """Called with every heartbeat, with the sessions the worker holds. Holding: a full
        collection of what came since the last when CPython's count asks for one (its
        quarter rule counts the frozen too), and one of everything once the memory per
        session is :data:`GROWTH` times the least it was since the last, and its share of
        time allows."""
        if not self.holding:
            return
        if gc.get_count()[2] >= self._thresholds[2]:
            gc.collect()  # only what is not frozen: short; _watch freezes what survives
        resident = self._resident()
        per_session = None if resident is None else resident / max(1, sessions)
        if per_session is not None:
            self._least = min(self._least, per_session)
        if self._clock() < self._due or (
                per_session is not None and per_session < self._least * GROWTH):
            return
        started = self._clock()
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        self._settle(self._clock() - started)


    def _settle(self, took: float) -> None:
        """After a collection of everything that took ``took`` seconds: when the next may be."""
        self._due = self._clock() + took / PAUSE_SHARE
        self._least = math.inf

    def _watch(self, phase: str, info: dict) -> None:
        """``gc.callbacks``: time the full collections; hold once one is long; while holding,
        freeze what each leaves (the young generations are empty then)."""
        if info["generation"] != 2:
            return
        if phase == "start":
            self._started = self._clock()
            return
        if self.holding:
            gc.freeze()
            return
        took = self._clock() - self._started
        if took >= LONG_PAUSE:
            self.holding = True
            gc.freeze()
            self._settle(took)
