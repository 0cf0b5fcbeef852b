"""Logging for the master and its workers: one line per event, to stderr or a file.

With a log file, every process (the master and the workers it forks, which inherit
the handler) checks before each line whether the file was moved away, as logrotate
does, and then reopens it: no signal has to reach the workers. ``SIGUSR1`` makes the
master reopen at once (see :func:`reopen_log_files`).
"""
from __future__ import annotations

import json
import logging
import logging.handlers
import sys

FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s"


class JsonFormatter(logging.Formatter):
    """``--log-format json``: one JSON object per line (time, pid, level, logger, message)."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON (an exception's traceback in ``exc_info``)."""
        line = {"time": self.formatTime(record), "pid": record.process,
                "level": record.levelname, "logger": record.name,
                "message": record.getMessage()}
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(line)


def configure_logging(level: str, log_file: str | None, log_format: str = "text") -> None:
    """Send sticky-cluster's log lines (and the app's) to ``log_file`` or stderr.

    :param log_format: ``text`` (one readable line) or ``json`` (one object per line).
    """
    handler: logging.Handler
    if log_file and log_file != "-":
        handler = logging.handlers.WatchedFileHandler(log_file)
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())


def reopen_log_files() -> None:
    """Reopen every log file of this process that was moved or removed since it was opened."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.handlers.WatchedFileHandler):
            handler.acquire()
            try:
                handler.reopenIfNeeded()
            finally:
                handler.release()
