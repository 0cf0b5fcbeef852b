"""The threading worker's bounded pool: ``--threads`` threads run the requests.

Hand-written rather than ``concurrent.futures.ThreadPoolExecutor`` for two things the
executor does not give: how many threads are busy right now (all busy is what the
worker's heartbeat reports as *full*, so that the master places new clients elsewhere),
and taking back the requests that have waited too long for a thread (the poller answers
them ``503`` instead of leaving them hanging behind websockets that hold every thread
for their whole life). It is also lighter per request (no Future).

Threads are started when work finds none idle, up to the limit, and then kept. They are
started by a thread of the pool's own, never by the caller of :meth:`ThreadPool.submit`:
``Thread.start`` waits until the new thread runs, which, among hundreds of threads that
want the GIL, can take long enough to hold up the worker's poller (measured: 1,000
websockets arriving at once kept it from heartbeating for seconds).
"""
from __future__ import annotations

import collections
import threading
import time
from typing import Callable, Generic, TypeVar

Item = TypeVar("Item")


class ThreadPool(Generic[Item]):
    """At most ``size`` threads, each running ``run(item)`` for one queued item at a time.

    :param size: the most threads (``--threads``).
    :param run: what a thread does with an item; its exceptions are the caller's to catch.
    :param clock: the monotonic clock (a parameter for the tests).
    """

    def __init__(self, size: int, run: Callable[[Item], None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        if size < 1:
            raise ValueError("a pool needs at least one thread")
        self.size = size
        self._run = run
        self._clock = clock
        self._queue: collections.deque[tuple[float, Item]] = collections.deque()
        self._ready = threading.Condition(threading.Lock())
        self._threads = 0
        self._idle = 0
        self._to_start = threading.Semaphore(0)
        threading.Thread(target=self._start_threads, name="sticky-pool", daemon=True).start()
        self.busy = 0
        """Threads running an item now."""

    @property
    def waiting(self) -> int:
        """Items queued for a thread."""
        return len(self._queue)

    @property
    def full(self) -> bool:
        """Every thread is busy: a new item would wait."""
        return self.busy >= self.size

    def submit(self, item: Item) -> None:
        """Queue ``item``; an idle thread (or a new one, under the limit) takes it."""
        with self._ready:
            self._queue.append((self._clock(), item))
            if self._idle:  # counted out here, so that the next item wakes another one
                self._idle -= 1
                self._ready.notify()
                return
            if self._threads >= self.size:
                return
            self._threads += 1
        self._to_start.release()

    def expired(self, max_wait: float) -> list[Item]:
        """Take out the items that have waited more than ``max_wait`` seconds for a thread."""
        limit = self._clock() - max_wait
        taken = []
        with self._ready:
            while self._queue and self._queue[0][0] < limit:
                taken.append(self._queue.popleft()[1])
        return taken

    def _start_threads(self) -> None:
        while True:
            self._to_start.acquire()
            threading.Thread(target=self._work, name="sticky-request", daemon=True).start()

    def _work(self) -> None:
        while True:
            with self._ready:
                while not self._queue:
                    self._idle += 1
                    self._ready.wait()
                _queued, item = self._queue.popleft()
                self.busy += 1
            try:
                self._run(item)
            finally:
                with self._ready:
                    self.busy -= 1
