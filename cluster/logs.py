"""Logging for the master and its workers: one line per event, to stderr or a file."""
from __future__ import annotations

import logging
import sys

FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s"


def configure_logging(level: str, log_file: str | None) -> None:
    """Send sticky-cluster's log lines (and the app's) to ``log_file`` or stderr."""
    handler: logging.Handler
    if log_file and log_file != "-":
        handler = logging.FileHandler(log_file)
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())


def reopen_log_files() -> None:
    """Close every file handler of the root logger; each reopens its file at its next line."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.close()
