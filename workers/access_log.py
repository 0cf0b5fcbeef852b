"""The access log (``--access-log``): one line per HTTP request, written by the worker.

A WSGI middleware around the app (:class:`AccessLog`; the asyncio servers' hooks are in
:mod:`workers.asyncio.access_log`, and all write through :class:`LineWriter`). A request's
line is written when its response is complete; a websocket's when the session ends (the app
returns only then), with status 101. The format is gunicorn's: ``%(h)s %(r)s %(s)s …``
atoms, plus ``%(slot)s`` (the worker's slot) and ``%(transport)s`` (the Engine.IO transport:
``polling``, ``websocket`` or ``-``); the vocabulary, which the master checks when it
starts, is :mod:`cluster.protocol.access_log_format`. This module writes the lines.

Each line is one ``write()`` to a file opened with ``O_APPEND``, so the lines of all
workers interleave whole. Every value that comes from the client is escaped: a
request cannot forge a line. This module is pure (no eventlet).
"""
from __future__ import annotations

import os
import sys
import time
import urllib.parse
from typing import IO, Callable, Iterable

from cluster.protocol.access_log_format import DEFAULT_FORMAT
from cluster.protocol.spec import WorkerSpec


def open_log(path: str) -> IO[str]:
    """The stream ``path`` names: standard output for ``-``, else a file appended to."""
    if path == "-":
        return sys.stdout
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    return os.fdopen(fd, "a", buffering=1)


def escape(value: str) -> str:
    """``value`` with control characters, backslashes and quotes escaped (one line, no forgery)."""
    out = []
    for char in value:
        code = ord(char)
        if char in '\\"':
            out.append("\\" + char)
        elif code < 0x20 or code == 0x7F or 0x80 <= code < 0xA0:
            out.append(f"\\x{code:02x}")
        else:
            out.append(char)
    return "".join(out)


def format_line(fmt: str, environ: dict, status: str, length: int | None, started: float,
                took: float, slot: int) -> str:
    """One access log line for a request (pure: the middleware and the tests use it)."""
    path = escape(environ.get("PATH_INFO", ""))
    query = escape(environ.get("QUERY_STRING", ""))
    method = escape(environ.get("REQUEST_METHOD", "-"))
    protocol = escape(environ.get("SERVER_PROTOCOL", "-"))
    transport = urllib.parse.parse_qs(environ.get("QUERY_STRING", "")).get("transport", ["-"])[0]
    atoms = {
        "h": escape(environ.get("REMOTE_ADDR", "-")), "l": "-",
        "u": "-", "t": time.strftime("[%d/%b/%Y:%H:%M:%S %z]", time.localtime(started)),
        "r": f"{method} {path}{'?' + query if query else ''} {protocol}",
        "m": method, "U": path, "q": query, "H": protocol, "s": status,
        "B": str(length or 0), "b": str(length) if length else "-",
        "f": escape(environ.get("HTTP_REFERER", "-")),
        "a": escape(environ.get("HTTP_USER_AGENT", "-")),
        "T": str(int(took)), "M": str(int(took * 1000)), "D": str(int(took * 1_000_000)),
        "L": f"{took:.6f}", "p": str(os.getpid()), "slot": str(slot),
        "transport": escape(transport),
    }
    return fmt % atoms


def writer(spec: WorkerSpec) -> "LineWriter | None":
    """The writer of the access log ``spec`` asks for, or None when it asks for none."""
    if not spec.access_log:
        return None
    return LineWriter(open_log(spec.access_log), spec.access_log_format or DEFAULT_FORMAT,
                      spec.slot)


def wrap(app: Callable, spec: WorkerSpec) -> Callable:
    """``app`` with the access log ``spec`` asks for (``app`` itself when there is none)."""
    lines = writer(spec)
    return app if lines is None else AccessLog(app, lines)


class LineWriter:
    """Writes access log lines to ``stream``, one ``write()`` each.

    :param stream: where lines go (see :func:`open_log`).
    :param fmt: the line format (see :func:`cluster.protocol.access_log_format.check_format`).
    :param slot: the worker's slot, for ``%(slot)s``.
    """

    def __init__(self, stream: IO[str], fmt: str, slot: int) -> None:
        self._stream = stream
        self._fmt = fmt
        self._slot = slot

    def write(self, environ: dict, status: str, length: int | None, started: float,
              took: float) -> None:
        """Write the line of a request (the facts of :func:`format_line`)."""
        line = format_line(self._fmt, environ, status, length, started, took, self._slot)
        try:
            self._stream.write(line + "\n")
            self._stream.flush()
        except (OSError, ValueError):
            pass  # a full disk or a closed stdout must not break the request


class AccessLog:
    """WSGI middleware: ``app`` with one line per request written by ``lines``.

    :param app: the WSGI app to serve.
    :param lines: the access log's writer.
    """

    def __init__(self, app: Callable, lines: LineWriter) -> None:
        self.app = app
        self._lines = lines

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        started = time.time()
        clock = time.monotonic()
        seen: list[str] = []

        def start(status: str, headers: list, exc_info: object = None) -> Callable:
            seen[:] = [status.split(" ", 1)[0]]
            return start_response(status, headers, exc_info)

        try:
            body = self.app(environ, start)
        except BaseException:
            self._write(environ, seen[0] if seen else "500", None, started, clock)
            raise
        if isinstance(body, (list, tuple)):  # the usual case: keeps eventlet's Content-Length
            self._write(environ, self._status(seen, environ), sum(map(len, body)), started, clock)
            return body
        return self._streamed(body, environ, seen, started, clock)

    def _streamed(self, body: Iterable[bytes], environ: dict, seen: list[str], started: float,
                  clock: float) -> Iterable[bytes]:
        length = 0
        try:
            for chunk in body:
                length += len(chunk)
                yield chunk
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                close()
            self._write(environ, self._status(seen, environ), length, started, clock)

    @staticmethod
    def _status(seen: list[str], environ: dict) -> str:
        """The status sent; 101 for a websocket that was accepted (Engine.IO "starts" a
        200 response after the session, which the server never sends)."""
        upgraded = environ.get("HTTP_UPGRADE", "").lower() == "websocket"
        if upgraded and (not seen or seen[0].startswith("2")):
            return "101"
        return seen[0] if seen else "-"

    def _write(self, environ: dict, status: str, length: int | None, started: float,
               clock: float) -> None:
        self._lines.write(environ, status, length, started, time.monotonic() - clock)
