"""The master's last lifecycle events, for the live status page and ``/status``.

The events are the master's own log lines (``worker 4242 (slot 1) ready after 0.9 s``,
``rolling restart done`` …): a logging handler keeps the last :data:`EVENT_LIMIT` of
them in memory, whatever the log level, so the page shows what the log says. It is a
logging *filter* that lets every line through, not a handler: a handler holds a lock
that eventlet, in a forked worker, would warn it cannot green.
"""
from __future__ import annotations

import collections
import logging

EVENT_LIMIT = 30


class EventLog(logging.Filter):
    """Keeps the master's last INFO-or-worse lines (time, level, message)."""

    def __init__(self) -> None:
        super().__init__()
        self._events: collections.deque[dict] = collections.deque(maxlen=EVENT_LIMIT)
        self._logger = logging.getLogger("sticky_cluster.master")

    def attach(self) -> None:
        """Start keeping the master's INFO lines; the log still shows only ``--log-level``'s."""
        root = logging.getLogger()
        for handler in root.handlers:
            if handler.level == logging.NOTSET:
                handler.setLevel(root.level)
        if self._logger.getEffectiveLevel() > logging.INFO:
            self._logger.setLevel(logging.INFO)
        self._logger.addFilter(self)

    def detach(self) -> None:
        """Stop keeping lines (the master stops, or a forked worker forgets)."""
        self._logger.removeFilter(self)

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep one line (INFO or worse), and let it through."""
        if record.levelno >= logging.INFO:
            self._events.append({"time": record.created, "level": record.levelname,
                                 "message": record.getMessage()})
        return True

    def recent(self) -> list[dict]:
        """The kept events, oldest first."""
        return list(self._events)
