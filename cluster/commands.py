"""How work reaches the master's loop: signals, and the embedding API's calls, queued.

As in gunicorn's arbiter, a signal handler does nothing but queue the signal's number;
the kernel's wake-up fd (:func:`signal.set_wakeup_fd`) wakes the selector. A call from
another thread (:meth:`cluster.master.Master.reload`, ``scale``, ``stop``) queues a
callable and writes to the same pipe. The loop takes both, in order, between turns
(:meth:`CommandQueue.take`); nothing ever runs inside a handler or another thread.
"""
from __future__ import annotations

import collections
import os
import selectors
import signal
from typing import Callable, Iterable, Iterator

Command = int | Callable[[], None]
"""A signal number (the loop calls its ``handle_<name>``) or a callable to run."""


class CommandQueue:
    """The master's queue of signals and commands, and the pipe that wakes its selector."""

    def __init__(self) -> None:
        self._queue: collections.deque[Command] = collections.deque()
        self._wake_read, self._wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def __len__(self) -> int:
        return len(self._queue)

    def register(self, selector: selectors.BaseSelector) -> None:
        """Have ``selector`` wake when a signal or a command arrives."""
        selector.register(self._wake_read, selectors.EVENT_READ, self._drain_wake_ups)

    def install(self, names: Iterable[str], handler: Callable[[int, object], None]) -> None:
        """Route the signals ``names`` (``"HUP"``, …) to ``handler``, waking the selector."""
        signal.set_wakeup_fd(self._wake_write, warn_on_full_buffer=False)
        for name in names:
            signal.signal(getattr(signal, f"SIG{name}"), handler)

    def restore(self, names: Iterable[str]) -> None:
        """Give the signals ``names`` back their default action; stop waking the selector."""
        signal.set_wakeup_fd(-1)
        for name in names:
            signal.signal(getattr(signal, f"SIG{name}"), signal.SIG_DFL)

    def put_signal(self, signum: int) -> None:
        """Queue a signal, from its handler (the wake-up fd has woken the selector)."""
        self._queue.append(signum)

    def post(self, command: Callable[[], None]) -> None:
        """Queue ``command`` from any thread and wake the loop to run it."""
        self._queue.append(command)
        try:
            os.write(self._wake_write, b"\0")
        except BlockingIOError:  # the pipe is full: the loop is woken already
            pass

    def take(self) -> Iterator[Command]:
        """The queued signals and commands, oldest first, each once."""
        while self._queue:
            yield self._queue.popleft()

    def close(self) -> None:
        """Close the wake-up pipe (in a forked worker, or when a test is done)."""
        os.close(self._wake_read)
        os.close(self._wake_write)

    def _drain_wake_ups(self, _fd: object, _mask: int) -> None:
        try:
            while os.read(self._wake_read, 4096):
                pass
        except BlockingIOError:
            pass
