"""A WSGI wrapper that keeps every error inside the worker: logged, never sent.

``eventlet.wsgi`` answers an exception with the full traceback in the body while its
``debug`` is on (its default), and drops it silently when its output is off. The
worker runs it with ``debug=False`` and wraps the app in :func:`log_errors`: the
client gets a bare ``500`` and the log gets the traceback, with the worker's pid.
"""
from __future__ import annotations

import logging
import os
import sys
from typing import Any, Callable, Iterable

log = logging.getLogger("sticky_cluster.worker")

WSGIApp = Callable[[dict, Callable[..., Any]], Iterable[bytes]]


def log_errors(app: WSGIApp) -> WSGIApp:
    """Wrap ``app``: an exception it raises is logged and answered ``500`` with no body."""

    def guarded(environ: dict, start_response: Callable[..., Any]) -> Iterable[bytes]:
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
