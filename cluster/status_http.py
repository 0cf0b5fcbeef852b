"""A tiny HTTP/1.1 server on the master's loop, for ``--status-bind`` (never for clients).

It answers ``GET`` and ``HEAD`` on its own listener, one request per connection
(``Connection: close``), with non-blocking sockets registered in the master's selector:
it never blocks the loop and never touches the client listeners or the hand-off path.
Everything is bounded: the request head (:data:`HEAD_LIMIT`), the connections open at
once (:data:`CONNECTION_LIMIT`, more are closed at accept) and the time a connection
may take (:data:`CONNECTION_TIMEOUT`). What to answer is the ``respond`` callable's
business (see :mod:`cluster.status_site`); this module only speaks HTTP.
"""
from __future__ import annotations

import dataclasses
import logging
import selectors
import socket
import time
from http import HTTPStatus
from typing import Callable, NamedTuple

from . import listeners
from .config import Bind

log = logging.getLogger("sticky_cluster.master")

HEAD_LIMIT = 8192
"""Bytes of request line and headers read at most; a longer head gets 431."""
CONNECTION_LIMIT = 32
"""Status connections open at once; more are closed as soon as accepted."""
CONNECTION_TIMEOUT = 5.0
"""Seconds a status connection gets to send its request and read the answer."""
ACCEPT_BATCH = 8


class Response(NamedTuple):
    """What to answer to one request."""

    status: int
    content_type: str
    body: bytes


class Request(NamedTuple):
    """A parsed request line: the method and the path (query string cut off)."""

    method: str
    path: str


def parse_head(head: bytes) -> Request | Response | None:
    """Parse a request head: a Request, a Response for a bad one, or None while incomplete.

    Pure; only the request line matters (the headers are read and ignored).
    """
    end = head.find(b"\r\n\r\n")
    if end < 0:
        end = head.find(b"\n\n")
    if end < 0:
        return _error(431) if len(head) >= HEAD_LIMIT else None
    line = head.split(b"\n", 1)[0].rstrip(b"\r")
    parts = line.split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/1.") or not parts[1].startswith(b"/"):
        return _error(400)
    method = parts[0].decode("ascii", errors="replace")
    if method not in ("GET", "HEAD"):
        return _error(405)
    path = parts[1].split(b"?", 1)[0].decode("ascii", errors="replace")
    return Request(method, path)


def _error(status: int) -> Response:
    return Response(status, "text/plain; charset=utf-8",
                    f"{status} {HTTPStatus(status).phrase}\n".encode())


def render(response: Response, head_only: bool = False) -> bytes:
    """The bytes of ``response``, with ``Connection: close`` and no caching."""
    phrase = HTTPStatus(response.status).phrase
    head = (f"HTTP/1.1 {response.status} {phrase}\r\n"
            f"Content-Type: {response.content_type}\r\n"
            f"Content-Length: {len(response.body)}\r\n"
            "Cache-Control: no-store\r\n"
            "Connection: close\r\n\r\n").encode()
    return head if head_only else head + response.body


@dataclasses.dataclass(eq=False)
class _Connection:
    sock: socket.socket
    deadline: float
    head: bytearray = dataclasses.field(default_factory=bytearray)
    out: memoryview | None = None


class StatusServer:
    """Serves ``respond(path)`` on ``bind``, from the master's selector loop.

    :param bind: where to listen (``HOST:PORT`` or ``unix:PATH``).
    :param respond: makes the Response for a ``GET`` of a path.
    """

    def __init__(self, bind: Bind, respond: Callable[[str], Response]) -> None:
        self.bind = bind
        self._respond = respond
        self._listener: socket.socket | None = None
        self._selector: selectors.BaseSelector | None = None
        self._connections: dict[socket.socket, _Connection] = {}

    def open(self, selector: selectors.BaseSelector) -> None:
        """Listen, and serve from ``selector``; ConfigError (one line) when it cannot listen."""
        self._listener = listeners.open_listener(self.bind)
        self._selector = selector
        selector.register(self._listener, selectors.EVENT_READ, self._on_accept)

    def close(self) -> None:
        """Stop listening and close every status connection."""
        for conn in list(self._connections.values()):
            self._close(conn)
        if self._listener is not None:
            self._unregister(self._listener)
            listeners.close_listener(self._listener, self.bind)
            self._listener = None

    def forget_in_child(self) -> None:
        """In a forked worker: close the sockets without touching the master's selector or files."""
        for sock in self._connections:
            sock.close()
        self._connections.clear()
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    def tick(self, now: float) -> None:
        """Close connections past their deadline."""
        for conn in [c for c in self._connections.values() if now >= c.deadline]:
            self._close(conn)

    def _on_accept(self, listener: socket.socket, _mask: int) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                sock, _address = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("status server: accept failed: %s", exc.strerror)
                return
            if len(self._connections) >= CONNECTION_LIMIT:
                sock.close()
                continue
            sock.setblocking(False)
            conn = _Connection(sock, time.monotonic() + CONNECTION_TIMEOUT)
            self._connections[sock] = conn
            assert self._selector is not None
            self._selector.register(sock, selectors.EVENT_READ, self._on_event)

    def _on_event(self, sock: socket.socket, mask: int) -> None:
        conn = self._connections.get(sock)
        if conn is None:
            return
        if conn.out is not None:
            self._write(conn)
            return
        try:
            data = sock.recv(HEAD_LIMIT - len(conn.head) + 1)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        if not data:
            self._close(conn)
            return
        conn.head += data
        parsed = parse_head(bytes(conn.head))
        if parsed is None:
            return
        if isinstance(parsed, Response):
            conn.out = memoryview(render(parsed))
        else:
            try:
                response = self._respond(parsed.path)
            except Exception:  # noqa: BLE001 - a status page bug must never stop the master
                log.exception("status server: %s failed", parsed.path)
                response = _error(500)
            conn.out = memoryview(render(response, head_only=parsed.method == "HEAD"))
        self._write(conn)

    def _write(self, conn: _Connection) -> None:
        assert conn.out is not None and self._selector is not None
        try:
            sent = conn.sock.send(conn.out)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._close(conn)
            return
        conn.out = conn.out[sent:]
        if not conn.out:
            self._close(conn)
        else:
            self._selector.modify(conn.sock, selectors.EVENT_WRITE, self._on_event)

    def _close(self, conn: _Connection) -> None:
        self._connections.pop(conn.sock, None)
        self._unregister(conn.sock)
        conn.sock.close()

    def _unregister(self, sock: socket.socket) -> None:
        if self._selector is None:
            return
        try:
            self._selector.unregister(sock)
        except (KeyError, ValueError):
            pass
