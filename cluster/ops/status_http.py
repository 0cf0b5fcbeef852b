"""A tiny HTTP/1.1 server on the master's loop, for ``--status-bind`` (never for clients).

It answers ``GET`` and ``HEAD`` on its own listener, one request per connection
(``Connection: close``), with non-blocking sockets registered in the master's selector
(the connection handling is :class:`cluster.ops.selector_server.SelectorServer`'s, shared
with the control socket): it never blocks the loop and never touches the client
listeners or the hand-off path. Everything is bounded: the request head
(:data:`HEAD_LIMIT`), the time it may take to arrive (:data:`HEAD_TIMEOUT`), the
connections open at once (:data:`CONNECTION_LIMIT`: a new one takes the slot of a slow
one), the time a connection gets to read its answer (:data:`CONNECTION_TIMEOUT`) and the
connections taken per tick of the master's loop (:data:`ACCEPT_BUDGET`). TCP listeners
get ``TCP_DEFER_ACCEPT``: a connection that sends nothing never takes a slot, and one
that sends its request is answered as it is accepted. So a health check is answered
whatever slow clients do. What to answer is the ``respond`` callable's business (see
:mod:`cluster.ops.status_site`); this module only speaks HTTP.
"""
from __future__ import annotations

import contextlib
import logging
import socket
from http import HTTPStatus
from typing import Callable, NamedTuple

from cluster.setup.config import Bind

from .selector_server import Connection, SelectorServer

log = logging.getLogger("sticky_cluster.master")

HEAD_LIMIT = 8192
"""Bytes of request line and headers read at most; a longer head gets 431."""
CONNECTION_LIMIT = 32
"""Status connections open at once; a new one past it takes the slot of a slow one."""
HEAD_TIMEOUT = 2.0
"""Seconds a status connection gets, from its accept, to send its request."""
CONNECTION_TIMEOUT = 5.0
"""Seconds a status connection gets to read its answer."""
ACCEPT_BUDGET = 100
"""Status connections accepted at most per tick of the master's loop (it ticks its servers
every 0.1 to 0.25 s: 400 to 1,000 connections a second). What scrapers may cost the
master is bounded; past it they wait in the listen backlog."""
DEFER_ACCEPT = 2
"""Seconds the kernel holds a TCP connection that has sent nothing (``TCP_DEFER_ACCEPT``)."""


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


class StatusServer(SelectorServer):
    """Serves ``respond(path)`` on ``bind``, from the master's selector loop.

    :param bind: where to listen (``HOST:PORT`` or ``unix:PATH``).
    :param respond: makes the Response for a ``GET`` of a path.
    :param batch: a context held while the connections of one accept batch are answered
                  (:meth:`cluster.ops.status_site.Snapshot.held`).
    """

    def __init__(self, bind: Bind, respond: Callable[[str], Response],
                 batch: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext) -> None:
        super().__init__(bind, label="status server", request_limit=HEAD_LIMIT,
                         connection_limit=CONNECTION_LIMIT, timeout=CONNECTION_TIMEOUT,
                         head_timeout=HEAD_TIMEOUT, accept_budget=ACCEPT_BUDGET)
        self._respond = respond
        self._batch = batch

    def _on_accept(self, listener: socket.socket, mask: int) -> None:
        with self._batch():  # the requests accepted together may share one snapshot
            super()._on_accept(listener, mask)

    def _listen(self) -> socket.socket:
        listener = super()._listen()
        if listener.family != socket.AF_UNIX and hasattr(socket, "TCP_DEFER_ACCEPT"):
            listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, DEFER_ACCEPT)
        return listener

    def _received(self, conn: Connection) -> None:
        parsed = parse_head(bytes(conn.received))
        if parsed is None:
            return
        conn.answered = True
        if isinstance(parsed, Response):
            self._send(conn, render(parsed), close_after=True)
            return
        try:
            response = self._respond(parsed.path)
        except Exception:  # noqa: BLE001 - a status page bug must never stop the master
            log.exception("status server: %s failed", parsed.path)
            response = _error(500)
        self._send(conn, render(response, head_only=parsed.method == "HEAD"), close_after=True)
