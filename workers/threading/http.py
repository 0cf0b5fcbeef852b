"""One HTTP/1.1 request served to a WSGI app on a pool thread (the threading runtime).

The request's head was read and parsed by the poller (:mod:`workers.threading.server`)
with h11, the HTTP/1.1 state machine of python-hyper, which simple-websocket already
brings in (through wsproto): h11 checks the syntax, frames the body (``Content-Length``
or chunked) and the response (a length, chunks, or a close), and says whether the
connection may serve another request. This module builds the WSGI ``environ``, runs the
app, writes what it answers and tells the caller what becomes of the connection:

- :data:`KEEP`: the response is complete and the request's body read; the connection
  goes back to the poller for its next request (with the bytes already read behind);
- :data:`CLOSE`: closed here (an error, ``Connection: close``, HTTP/1.0, a failed upgrade);
- :data:`TAKEN`: a websocket took the socket (the app never started a response to an
  ``Upgrade`` request): simple-websocket owns it now; the server forgets it, unclosed.

Each read and write of a plain request's socket times out after ``header_timeout``
(a client that stops sending its body or reading the answer); an Engine.IO long poll
waits in the app, not on the socket, so it is not cut. Errors are logged, never sent.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import socket
import sys
import urllib.parse
from typing import Any, Callable, Iterable

import h11

from ..simple_websocket_limits import SOCKET_KEY

log = logging.getLogger("sticky_cluster.worker")

HEAD_LIMIT = 65536
"""The most bytes a request's line and headers may take (eventlet.wsgi's total too)."""

RECV_SIZE = 65536
"""Bytes asked of the socket per read."""

DRAIN_LIMIT = 65536
"""Body bytes a response may leave unread and still keep the connection alive."""

KEEP, CLOSE, TAKEN = "keep", "close", "taken"
"""What :func:`serve_request` leaves of the connection."""

WSGIApp = Callable[[dict, Callable[..., Any]], Iterable[bytes]]


@dataclasses.dataclass(eq=False)
class Connection:
    """A client connection of the threading worker, between two requests or in one.

    :param sock: the client socket.
    :param address: the client's address (from the master: the real one).
    """

    sock: socket.socket
    address: tuple[str, int]
    buffer: bytearray = dataclasses.field(default_factory=bytearray)
    """Bytes read from the socket that no request has consumed yet."""
    serve_here: bool = False
    """Its next request is served here whatever sid it names (a resumed connection)."""
    parser: h11.Connection | None = None
    """The request in progress, once its head is complete."""
    request: h11.Request | None = None
    """The head of the request in progress."""
    searched: int = 0
    """Bytes of :attr:`buffer` already searched for the end of the head."""
    deadline: float = 0.0
    """When the poller closes it (its header, keep-alive or linger timeout)."""
    idle: bool = True
    """No byte of its next request has come yet."""
    served: bool = False
    """It has served a request: its wait for the next one is the keep-alive timeout."""
    lingering: bool = False
    """Refused: what it still sends is read and dropped until it closes, the deadline, or
    :data:`~workers.limits.LINGER_LIMIT` bytes."""
    dropped: int = 0
    """Bytes read and dropped while lingering."""


def head_end(conn: Connection) -> int | None:
    """The offset just past the blank line that ends the head in ``conn.buffer``, or None."""
    buffer = conn.buffer
    start = max(0, conn.searched - 3)
    ends = [at + len(mark) for mark in (b"\r\n\r\n", b"\n\n")
            if (at := buffer.find(mark, start)) >= 0]
    conn.searched = len(buffer)
    return min(ends) if ends else None


def parse_head(conn: Connection) -> h11.Request:
    """Parse the complete head in ``conn.buffer`` (and keep what follows for the body).

    Raises ``h11.RemoteProtocolError`` for a malformed request.
    """
    parser = h11.Connection(h11.SERVER, max_incomplete_event_size=HEAD_LIMIT)
    parser.receive_data(bytes(conn.buffer))
    conn.buffer.clear()
    conn.searched = 0
    event = parser.next_event()
    if not isinstance(event, h11.Request):
        raise h11.RemoteProtocolError("incomplete request head")
    conn.parser, conn.request = parser, event
    return event


def header(request: h11.Request, name: bytes) -> str | None:
    """The value of header ``name`` (lower case) of ``request``, or None."""
    for key, value in request.headers:
        if key == name:
            return value.decode("latin-1")
    return None


def is_upgrade(request: h11.Request) -> bool:
    """Whether ``request`` asks to become a websocket."""
    return (header(request, b"upgrade") or "").lower() == "websocket"


class Body:
    """``wsgi.input``: the request's body, read through h11 as the app asks for it."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._parser: h11.Connection = conn.parser  # type: ignore[assignment]
        self._held = b""
        self._done = False

    def _chunk(self) -> bytes:
        """The next piece of the body; b"" at its end."""
        if self._done:
            return b""
        parser = self._parser
        while True:
            event = parser.next_event()
            if event is h11.NEED_DATA:
                if parser.they_are_waiting_for_100_continue:
                    self._conn.sock.sendall(parser.send(h11.InformationalResponse(
                        status_code=100, headers=[])))
                parser.receive_data(self._conn.sock.recv(RECV_SIZE))
            elif isinstance(event, h11.Data):
                return bytes(event.data)
            else:  # EndOfMessage (or a paused upgrade)
                self._done = True
                return b""

    def read(self, size: int | None = -1) -> bytes:
        """Up to ``size`` bytes (all that is left for -1 or None)."""
        parts = [self._held]
        have = len(self._held)
        while size is None or size < 0 or have < size:
            chunk = self._chunk()
            if not chunk:
                break
            parts.append(chunk)
            have += len(chunk)
        data = b"".join(parts)
        if size is None or size < 0:
            self._held = b""
            return data
        self._held = data[size:]
        return data[:size]

    def readline(self, size: int | None = -1) -> bytes:
        """One line (with its LF), at most ``size`` bytes."""
        while b"\n" not in self._held and (size is None or size < 0 or len(self._held) < size):
            chunk = self._chunk()
            if not chunk:
                break
            self._held += chunk
        end = self._held.find(b"\n") + 1 or len(self._held)
        if size is not None and size >= 0:
            end = min(end, size)
        line, self._held = self._held[:end], self._held[end:]
        return line

    def readlines(self, hint: int = -1) -> list[bytes]:
        """Every line left."""
        return list(iter(self.readline, b""))

    def __iter__(self) -> Any:
        return iter(self.readline, b"")

    def drain(self, limit: int) -> bool:
        """Read what the app left of the body, up to ``limit`` bytes; whether it ended."""
        left = limit - len(self._held)
        self._held = b""
        while left >= 0:
            chunk = self._chunk()
            if not chunk:
                return True
            left -= len(chunk)
        return False


def environ_of(conn: Connection, body: Body, base: dict[str, Any]) -> dict[str, Any]:
    """The WSGI environ of ``conn``'s request (PEP 3333), over ``base`` (the server's keys)."""
    request: h11.Request = conn.request  # type: ignore[assignment]
    target = request.target.decode("latin-1")
    path, _, query = target.partition("?")
    if "://" in path:  # an absolute target (RFC 9112 3.2.2)
        path = urllib.parse.urlsplit(path).path or "/"
    environ = {
        **base,
        "REQUEST_METHOD": request.method.decode("latin-1"),
        "SCRIPT_NAME": "",
        "PATH_INFO": urllib.parse.unquote(path, "latin-1"),
        "QUERY_STRING": query,
        "SERVER_PROTOCOL": "HTTP/" + request.http_version.decode("latin-1"),
        "REMOTE_ADDR": str(conn.address[0]) if conn.address else "",
        "REMOTE_PORT": str(conn.address[1]) if conn.address else "",
        "wsgi.input": body,
        "wsgi.errors": sys.stderr,
        # the worker's websocket (workers.threading.websocket) takes the socket from here
        SOCKET_KEY: conn.sock,
    }
    for name, value in request.headers:
        key = name.decode("latin-1").upper().replace("-", "_")
        text = value.decode("latin-1")
        if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            key = "HTTP_" + key
        environ[key] = f"{environ[key]},{text}" if key in environ else text
    return environ


class _Response:
    """``start_response`` and the writing of what the app answers, through h11."""

    def __init__(self, conn: Connection, head_request: bool) -> None:
        self._conn = conn
        self._parser: h11.Connection = conn.parser  # type: ignore[assignment]
        self._head_request = head_request
        self.status: str | None = None
        self._headers: list[tuple[str, str]] = []
        self.sent = False

    def start_response(self, status: str, headers: list[tuple[str, str]],
                       exc_info: Any = None) -> Callable[[bytes], None]:
        if exc_info is not None and self.sent:
            raise exc_info[1].with_traceback(exc_info[2])
        self.status, self._headers = status, list(headers)
        return self.write

    def write(self, data: bytes, length: int | None = None) -> None:
        """Send the head if not yet (with ``length`` when the whole body is known), then
        ``data``."""
        out = b""
        if not self.sent:
            if self.status is None:
                raise AssertionError("the app wrote before calling start_response")
            headers = self._headers
            if length is not None and not any(name.lower() in ("content-length",
                                                               "transfer-encoding")
                                              for name, _ in headers):
                headers = [*headers, ("Content-Length", str(length))]
            code, _, reason = self.status.partition(" ")
            out = self._parser.send(h11.Response(status_code=int(code), headers=headers,
                                                 reason=reason.encode("latin-1")))
            self.sent = True
        if data and not self._head_request:
            out += self._parser.send(h11.Data(data=data))
        if out:
            self._conn.sock.sendall(out)

    def finish(self) -> None:
        """End the response (the last chunk, for a chunked one)."""
        self._conn.sock.sendall(self._parser.send(h11.EndOfMessage()))


def serve_request(conn: Connection, app: WSGIApp, base_environ: dict[str, Any],
                  header_timeout: float) -> str:
    """Run ``app`` for ``conn``'s parsed request and answer it; :data:`KEEP`,
    :data:`CLOSE` or :data:`TAKEN` (see the module's docstring)."""
    request: h11.Request = conn.request  # type: ignore[assignment]
    upgrade = is_upgrade(request)
    conn.sock.settimeout(None if upgrade else header_timeout)
    body = Body(conn)
    response = _Response(conn, request.method == b"HEAD")
    environ = environ_of(conn, body, base_environ)
    try:
        result = app(environ, response.start_response)
        try:
            if upgrade and response.status is None:
                return TAKEN
            if isinstance(result, (list, tuple)):  # the usual case: one write, with its length
                response.write(b"".join(result), length=sum(map(len, result)))
            else:
                for chunk in result:
                    response.write(chunk)
                if not response.sent:
                    response.write(b"", length=0)
            response.finish()
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
    except (OSError, h11.RemoteProtocolError):  # the client went away or broke the body
        return _closed(conn)
    except Exception:  # noqa: BLE001 - nothing of it reaches the client
        log.exception("worker %d: %s %s failed", os.getpid(), environ.get("REQUEST_METHOD"),
                      environ.get("PATH_INFO"))
        if not response.sent:
            _send_quietly(conn.sock, b"HTTP/1.1 500 Internal Server Error\r\n"
                                     b"Content-Length: 0\r\nConnection: close\r\n\r\n")
        return _closed(conn)
    parser: h11.Connection = conn.parser  # type: ignore[assignment]
    if upgrade or parser.our_state is not h11.DONE:
        return _closed(conn)
    try:
        if parser.their_state is not h11.DONE and not body.drain(DRAIN_LIMIT):
            return _closed(conn)
    except (OSError, h11.RemoteProtocolError):
        return _closed(conn)
    if parser.their_state is not h11.DONE:
        return _closed(conn)
    conn.buffer = bytearray(parser.trailing_data[0])
    conn.parser = conn.request = None
    return KEEP


def _send_quietly(sock: socket.socket, data: bytes) -> None:
    try:
        sock.sendall(data)
    except OSError:
        pass


def _closed(conn: Connection) -> str:
    """Close ``conn`` (its answer, if any, is sent first: no reset)."""
    try:
        conn.sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    conn.sock.close()
    return CLOSE
