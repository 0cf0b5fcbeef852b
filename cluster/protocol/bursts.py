"""A warning about an event that comes in bursts, written once per burst with a count.

A master or a worker out of file descriptors, or a worker that keeps handing back what
is not a connection, would write the same line again and again and bury every other.
:class:`BurstLog` writes the first event of a burst at once; the events that follow
within its window are only counted, and the next line (the next event past the window,
or :meth:`BurstLog.flush` once the window is over) says how many there were. Stdlib
only: the master and the workers both use it.
"""
from __future__ import annotations

import logging
import time
from typing import Callable

BURST_WINDOW = 60.0
"""Seconds after a line during which the same event is only counted."""


class BurstLog:
    """One kind of event, logged at most once per ``window`` seconds.

    :param logger: where the lines go.
    :param level: their level (``logging.WARNING``).
    :param message: the line, a ``%``-format filled with :meth:`note`'s arguments.
    :param window: seconds after a line during which events are only counted.
    :param clock: monotonic seconds.
    """

    def __init__(self, logger: logging.Logger, level: int, message: str,
                 window: float = BURST_WINDOW,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._logger = logger
        self._level = level
        self._message = message
        self._window = window
        self._clock = clock
        self._last_args: tuple = ()
        self._said_at: float | None = None
        self._unsaid = 0
        self.count = 0
        """Events noted so far, logged or not."""

    def note(self, *args: object) -> None:
        """One more event (``args`` fill the message): logged now, or counted for later."""
        self.count += 1
        self._last_args = args
        now = self._clock()
        if self._said_at is not None and now < self._said_at + self._window:
            self._unsaid += 1
            return
        self._say(now, "and ")

    def flush(self) -> None:
        """Say how many events were only counted, once the window after the last line is over."""
        if self._unsaid and self._said_at is not None:
            now = self._clock()
            if now >= self._said_at + self._window:
                self._say(now, "")

    def _say(self, now: float, lead: str) -> None:
        text = self._message % self._last_args if self._last_args else self._message
        if self._unsaid and self._said_at is not None:
            text += f" ({lead}{self._unsaid} more in the last {now - self._said_at:.0f} s)"
        self._logger.log(self._level, "%s", text)
        self._said_at = now
        self._unsaid = 0
