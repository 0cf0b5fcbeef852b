"""Logging for the master and its workers: one line per event, to stderr or a file.

With a log file, every process (the master and the workers it forks, which inherit
the handler) checks before each line whether the file was moved away, as logrotate
does, and then reopens it: no signal has to reach the workers. ``SIGUSR1`` makes the
master reopen at once (see :func:`reopen_log_files`).

Log lines carry untrusted text: a client's sid as python-engineio logs it (URL-decoded),
a worker's boot error, an app's own messages. A control character in them could forge a
line or drive the operator's terminal, so every record is escaped as it is made (the
log record factory, which the libraries' records and their own handlers go through too),
and tracebacks are escaped and indented when formatted: one record can never look like
two, and a line that starts at column 0 with ``[`` is always one of ours. The same
factory masks the password of every URL in a record (:func:`cluster.protocol.adapters.redact_text`):
an app's boot error that names its database with credentials is logged without them.
"""
from __future__ import annotations

import json
import logging
import logging.handlers
import os
import re
import stat
import sys
from typing import Callable

from cluster.protocol.adapters import redact_text

FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s"

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_ESCAPES = {code: _NAMED.get(chr(code), f"\\x{code:02x}")
            for code in (*range(0x20), *range(0x7f, 0xa0))}
_ESCAPES.update({0x2028: "\\u2028", 0x2029: "\\u2029"})


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def escape(text: str) -> str:
    """``text`` with every control character (C0, DEL, C1, line separators) as ``\\xNN``."""
    return text.translate(_ESCAPES) if _CONTROL.search(text) else text


TRACEBACK = "traceback"
"""A record's attribute (``extra={"traceback": text}``) with a traceback as text, shown
as the traceback of an exception is: on indented lines, or in JSON's ``exc_info``."""

_TRACEBACK_START = "Traceback (most recent call last):"


class EscapingFormatter(logging.Formatter):
    """Formats a record on one line; a traceback follows on lines indented by two spaces."""

    def format(self, record: logging.LogRecord) -> str:
        """The record's line, and its :data:`TRACEBACK` (if any) on the lines below."""
        line = super().format(record)
        attached = getattr(record, TRACEBACK, None)
        return f"{line}\n{_indented(attached)}" if attached else line

    def formatException(self, ei) -> str:  # noqa: N802 - logging's name
        return _indented(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:  # noqa: N802 - logging's name
        return _indented(super().formatStack(stack_info))


def _indented(text: str) -> str:
    return "\n".join("  " + escape(line) for line in _masked(text).splitlines())


class _LogFile(logging.handlers.WatchedFileHandler):
    """A watched log file that workers running as another user can share.

    :param owner: (uid, gid) given the file when this process (root) creates or opens it.
    """

    def __init__(self, path: str, owner: tuple[int, int] | None) -> None:
        self._owner = owner
        super().__init__(path)

    def _open(self):  # noqa: ANN202 - logging's method
        stream = super()._open()
        if self._owner is not None and os.geteuid() == 0 and self._plain_file(stream.fileno()):
            os.fchown(stream.fileno(), *self._owner)
        return stream

    def _plain_file(self, fd: int) -> bool:
        """True when ``fd`` is the file at our path itself: not reached through a symbolic
        link, not a hard link of another file (root must not hand someone else's file over)."""
        opened = os.fstat(fd)
        try:
            named = os.lstat(self.baseFilename)
        except OSError:
            return False
        return (stat.S_ISREG(named.st_mode) and opened.st_nlink == 1
                and (named.st_dev, named.st_ino) == (opened.st_dev, opened.st_ino))

    def reopenIfNeeded(self) -> None:  # noqa: N802 - logging's name
        try:
            super().reopenIfNeeded()
        except PermissionError:  # a worker that may not look at the file's directory
            pass


_secret_url: str | None = None
"""A URL whose passwords are masked wherever they appear, alone too (the adapter's)."""


def _masked(text: str) -> str:
    return redact_text(text, _secret_url)


def _escaping_factory(make: Callable[..., logging.LogRecord]) -> Callable[..., logging.LogRecord]:
    def make_record(*args: object, **kwargs: object) -> logging.LogRecord:
        record = make(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string is logging's to report
            return record
        message, attached = _split_traceback(message)
        if attached:
            setattr(record, TRACEBACK, attached)
        record.msg, record.args = escape(_masked(message)), None  # formatted once, here
        return record

    make_record.escapes = True  # type: ignore[attr-defined]
    return make_record


def _split_traceback(message: str) -> tuple[str, str | None]:
    """(the message, the traceback written in it or None): a library that logs a traceback
    as its message (uvicorn, for an app's lifespan error) gets it shown as one."""
    head, start, rest = message.partition(_TRACEBACK_START)
    if not start:
        return message, None
    attached = (start + rest).rstrip()
    head = head.strip() or attached.splitlines()[-1]
    return head, attached


class JsonFormatter(logging.Formatter):
    """``--log-format json``: one JSON object per line (time, pid, level, logger, message)."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON (a traceback in ``exc_info``)."""
        line = {"time": self.formatTime(record), "pid": record.process,
                "level": record.levelname, "logger": record.name,
                "message": record.getMessage()}
        tracebacks = [getattr(record, TRACEBACK, None),
                      record.exc_info and self.formatException(record.exc_info)]
        if any(tracebacks):
            line["exc_info"] = _masked("\n".join(text for text in tracebacks if text))
        return json.dumps(line)


def configure_logging(level: str, log_file: str | None,
                      owner: tuple[int, int] | None = None, log_format: str = "text",
                      secret_url: str | None = None) -> None:
    """Send sticky-cluster's log lines (and the app's) to ``log_file`` or stderr, escaped
    and without passwords.

    :param owner: (uid, gid) that gets the log file, for workers that run as another user.
    :param log_format: ``text`` (one readable line) or ``json`` (one object per line).
    :param secret_url: a URL whose passwords are masked even where they appear alone
                       (the adapter's); every URL's password is masked anyway.
    """
    global _secret_url
    _secret_url = secret_url
    handler: logging.Handler
    if log_file and log_file != "-":
        handler = _LogFile(log_file, owner)
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else EscapingFormatter(FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    if not getattr(logging.getLogRecordFactory(), "escapes", False):
        logging.setLogRecordFactory(_escaping_factory(logging.getLogRecordFactory()))


def reopen_log_files() -> None:
    """Reopen every log file of this process that was moved or removed since it was opened."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.handlers.WatchedFileHandler):
            handler.acquire()
            try:
                handler.reopenIfNeeded()
            finally:
                handler.release()
