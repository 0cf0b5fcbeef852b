"""When a worker is recycled: ``--max-worker-memory`` and ``--max-worker-age``, with jitter.

A worker whose app leaks grows until the OOM killer takes it with all its sessions at
once; one that lives for weeks keeps whatever it accumulated. Either limit replaces the
worker through the rolling drain (:class:`cluster.pool.pool.WorkerPool` starts the new worker
first, then the old one drains), one slot at a time.

Each worker draws its own limits when it is started, as gunicorn's ``max_requests_jitter``
does, so that workers started together are not all recycled together: its age limit is
``max_age`` plus up to ``age_jitter`` seconds, its memory limit ``max_memory`` less up to
``memory_jitter`` (a memory limit is a ceiling: the jitter never raises it). Pure: the
pool reads the ages and the memory, this module decides.
"""
from __future__ import annotations

import dataclasses
import random
from typing import Callable

MB = 1024 * 1024
DEFAULT_JITTER = 0.1
"""The jitter, as a share of its limit, when none is given."""


@dataclasses.dataclass(frozen=True)
class Limits:
    """One worker's own limits: resident memory in bytes, age in seconds (None: none)."""

    memory: int | None = None
    age: float | None = None


@dataclasses.dataclass(frozen=True)
class RecyclePolicy:
    """The options, and the draw of each worker's :class:`Limits`.

    :param max_memory: MB of resident memory past which a worker is recycled (None: never).
    :param memory_jitter: MB taken at random, per worker, off ``max_memory`` (None: a tenth).
    :param max_age: seconds after which a worker is recycled (None: never).
    :param age_jitter: seconds added at random, per worker, to ``max_age`` (None: a tenth).
    """

    max_memory: int | None = None
    memory_jitter: int | None = None
    max_age: float | None = None
    age_jitter: float | None = None

    @property
    def enabled(self) -> bool:
        """Whether any limit is set."""
        return self.max_memory is not None or self.max_age is not None

    def draw(self, uniform: Callable[[float, float], float] = random.uniform) -> Limits:
        """A new worker's limits (``uniform(a, b)``: a random number between a and b)."""
        memory = age = None
        if self.max_memory is not None:
            jitter = _jitter(self.memory_jitter, self.max_memory)
            memory = int((self.max_memory - uniform(0.0, jitter)) * MB)
        if self.max_age is not None:
            age = self.max_age + uniform(0.0, _jitter(self.age_jitter, self.max_age))
        return Limits(memory, age)


def _jitter(given: float | None, limit: float) -> float:
    return min(limit, given) if given is not None else limit * DEFAULT_JITTER


def reason(limits: Limits, age: float, memory: int | None) -> str | None:
    """Why a worker of ``age`` seconds holding ``memory`` bytes (None: unknown) is due to be
    recycled: ``"memory"``, ``"age"``, or None while it is within its limits."""
    if limits.memory is not None and memory is not None and memory > limits.memory:
        return "memory"
    if limits.age is not None and age > limits.age:
        return "age"
    return None


def describe(why: str, limits: Limits, age: float, memory: int | None) -> str:
    """The log's words for a recycling: ``memory 612 MB > 600 MB``, ``age 3601 s > 3600 s``."""
    if why == "memory":
        return f"memory {(memory or 0) / MB:.0f} MB > {(limits.memory or 0) / MB:.0f} MB"
    return f"age {age:.0f} s > {limits.age:.0f} s"
