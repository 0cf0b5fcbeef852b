"""How long a slot that keeps crashing waits before its next worker.

A worker that dies young (before :data:`STABLE_LIFE`) makes its slot's next start wait,
twice as long each time it happens again in a row, up to :data:`MAX_BACKOFF`; one that
lived long resets the streak, and its slot restarts at once. A crash loop (a bad
deploy, a broker that refuses every worker) then costs little CPU and few log lines,
while a one-off crash is repaired at once. Pure: lifetimes in, delays out.
"""
from __future__ import annotations

import collections

STABLE_LIFE = 10.0
"""Seconds a worker must live for its slot's crash streak (and respawn backoff) to reset."""
FIRST_BACKOFF = 0.2
"""Seconds before the first respawn of a slot that crashed early; doubles each time."""
MAX_BACKOFF = 30.0
"""Seconds a slot that keeps crashing waits at most before its next respawn."""


class RespawnBackoff:
    """The crash streak of each slot, and the delay it earns."""

    def __init__(self) -> None:
        self._streak: collections.Counter[int] = collections.Counter()

    def delay(self, slot: int, lived: float) -> tuple[float, int]:
        """A worker of ``slot`` ended after ``lived`` seconds: (seconds before the next
        start of the slot, crashes in a row)."""
        streak = self._streak[slot] = 0 if lived > STABLE_LIFE else self._streak[slot] + 1
        return (0.0 if streak == 0 else min(FIRST_BACKOFF * 2 ** (streak - 1), MAX_BACKOFF),
                streak)
