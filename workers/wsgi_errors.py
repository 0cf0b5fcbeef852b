"""A WSGI wrapper that keeps every error inside the worker: logged, never sent.

``eventlet.wsgi`` answers an exception with the full traceback in the body while its
``debug`` is on (its default), and drops it silently when its output is off. The
worker runs it with ``debug=False`` and wraps the app in :func:`log_errors`: the
client gets a bare ``500`` and the log gets the traceback, with the worker's pid.
The request's ``wsgi.errors`` (stderr in eventlet and gevent, where their websockets write
unterminated lines such as ``socket shutdown error``) is the worker's log as well.
"""
from __future__ import annotations

import logging
import os
import sys
from typing import Any, Callable, Iterable

log = logging.getLogger("sticky_cluster.worker")

WSGIApp = Callable[[dict, Callable[..., Any]], Iterable[bytes]]


class ErrorStream:
    """``wsgi.errors`` as the worker's log: each write is one line of it (WARNING), with
    the worker's pid. A websocket's close that finds its socket closed already (the
    client went, or a drain aborted it) is eventlet's ``socket shutdown error``: DEBUG."""

    def write(self, text: str) -> None:
        """Log ``text`` as one line (a WSGI error stream's ``write``)."""
        text = text.strip()
        if text:
            level = logging.DEBUG if "socket shutdown error" in text else logging.WARNING
            log.log(level, "worker %d: %s", os.getpid(), text)

    def writelines(self, lines: Iterable[str]) -> None:
        """Log each of ``lines``."""
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        """Nothing is buffered."""


ERRORS = ErrorStream()


def log_errors(app: WSGIApp) -> WSGIApp:
    """Wrap ``app``: an exception it raises is logged and answered ``500`` with no body;
    what is written to ``wsgi.errors`` goes to the log (:class:`ErrorStream`)."""

    def guarded(environ: dict, start_response: Callable[..., Any]) -> Iterable[bytes]:
        environ["wsgi.errors"] = ERRORS
        try:
            return app(environ, start_response)
        except Exception:
            log.exception("worker %d: %s %s failed", os.getpid(),
                          environ.get("REQUEST_METHOD"), environ.get("PATH_INFO"))
            start_response("500 Internal Server Error",
                           [("Content-Type", "text/plain"), ("Content-Length", "0")],
                           sys.exc_info())
            return [b""]

    return guarded
