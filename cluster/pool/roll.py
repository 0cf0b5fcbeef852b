"""A rolling restart's progress: the slots still to roll, the worker booting for one.

Slot by slot, as uvicorn reloads and unlike gunicorn: a new worker is started for one
slot, and only once it is ready does the slot switch to it and the old one drain; then
the next slot. A slot whose worker is still booting (started, or respawned, before the
roll) waits for it. A roll during a roll starts over, so that every slot ends up on a
worker started after the last request. If the new worker of a slot dies before it is
ready, the roll stops there: the old workers keep serving, and the failure is kept
for ``/status``.

Pure bookkeeping: :class:`cluster.pool.pool.WorkerPool` starts and drains the workers, and
tells this object what happened to them.
"""
from __future__ import annotations

import collections
from typing import Callable, Collection

from .worker import Worker


class RollingRestart:
    """Which slot rolls next, and the counters of the rolls.

    ``counts`` is ``{"started": n, "finished": n, "failure": (roll number, why) | None}``.
    """

    def __init__(self) -> None:
        self._slots: collections.deque[int] = collections.deque()
        self.worker: Worker | None = None
        """The new worker booting for the slot that rolls now."""
        self.counts: dict = {"started": 0, "finished": 0, "failure": None}

    @property
    def under_way(self) -> bool:
        """Whether slots are left to roll, or one is rolling."""
        return self.worker is not None or bool(self._slots)

    def slots_left(self) -> Collection[int]:
        """The slots whose serving worker this roll will still drain: those waiting for
        their turn, and the one whose new worker boots (placement passes them over)."""
        if self.worker is None and not self._slots:
            return ()
        slots = set(self._slots)
        if self.worker is not None:
            slots.add(self.worker.slot)
        return slots

    def begin(self, size: int) -> None:
        """Roll every slot below ``size`` (again, when a roll is under way)."""
        self.counts["started"] += 1
        self._slots = collections.deque(range(size))

    def trim(self, size: int) -> None:
        """Forget the slots at or past ``size`` (scaled down)."""
        self._slots = collections.deque(slot for slot in self._slots if slot < size)

    def cancel(self) -> None:
        """Roll no more slots (the master stops)."""
        self._slots.clear()

    def next_slot(self, size: int, booting: Callable[[int], bool]) -> int | None:
        """The slot to roll now, if its turn has come: none rolls, and its worker is not
        booting (``booting(slot)``). Slots past ``size`` are skipped."""
        while self.worker is None and self._slots:
            slot = self._slots[0]
            if slot >= size:
                self._slots.popleft()
                continue
            if booting(slot):
                return None
            return self._slots.popleft()
        return None

    def let_go(self, worker: Worker) -> bool:
        """``worker`` is ready, or retired before it was: if it was the rolling one, the
        next slot may roll; True then."""
        if self.worker is not worker:
            return False
        self.worker = None
        return True

    def finish(self) -> bool:
        """Count the roll finished if no slot is left nor rolling and it was not yet;
        True then."""
        if self.under_way or self.counts["finished"] >= self.counts["started"]:
            return False
        self.counts["finished"] = self.counts["started"]
        return True

    def fail(self, why: str) -> None:
        """The rolling worker died before it was ready: stop the roll, keep ``why``."""
        self.worker = None
        self._slots.clear()
        self.counts["finished"] = self.counts["started"]
        self.counts["failure"] = (self.counts["started"], why)
