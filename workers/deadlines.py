"""Deadlines kept by the second they fall in, for waits that are long and mostly end early
(Engine.IO's 45-s wait for a session's next packet): each costs a dict entry, taken out in
O(1) when the wait ends, and one look a second finds those that are due. The packet queues
of eventlet and asyncio workers time their waits with it (``workers/*/packet_queue.py``),
each from its own loop's timer."""
from __future__ import annotations

import math
from typing import Generic, Hashable, TypeVar

Key = TypeVar("Key", bound=Hashable)
Value = TypeVar("Value")


class SecondBuckets(Generic[Key, Value]):
    """Waits (a key and a value each) by the second, rounded up, their deadline falls in."""

    def __init__(self) -> None:
        self._buckets: dict[int, dict[Key, Value]] = {}

    def add(self, key: Key, value: Value, deadline: float) -> int:
        """Keep ``key`` (with ``value``) until ``deadline``; its second, to :meth:`discard` it."""
        second = math.ceil(deadline)
        self._buckets.setdefault(second, {})[key] = value
        return second

    def discard(self, key: Key, second: int) -> None:
        """``key``'s wait ended before its deadline."""
        bucket = self._buckets.get(second)
        if bucket is not None:
            bucket.pop(key, None)
            if not bucket:
                del self._buckets[second]

    def pop_due(self, now: float) -> list[tuple[Key, Value]]:
        """The waits whose second is ``now`` or before, taken out."""
        due: list[tuple[Key, Value]] = []
        for second in [second for second in self._buckets if second <= now]:
            due.extend(self._buckets.pop(second).items())
        return due

    def __bool__(self) -> bool:
        """Whether any wait is kept."""
        return bool(self._buckets)
