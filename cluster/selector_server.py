"""A small one-request server on the master's selector loop: the base of the operators' servers.

The status endpoint (:mod:`cluster.status_http`) and the control socket
(:mod:`cluster.control_socket`) take one request per connection from a listener of
their own, registered in the master's selector next to the client listeners. What they
share is here, once: accept (a few per wake-up, and at most a number of connections at
once: more are closed as soon as accepted), a per-connection buffer of the request with
a bounded read, a non-blocking write of the answer (write interest only while some of
it waits), a deadline per connection checked on the loop's tick, and the close.

It must never block the loop, and never touch the client listeners or the hand-off
path. What a request means and what to answer is the subclass's business
(:meth:`SelectorServer._received`).
"""
from __future__ import annotations

import dataclasses
import logging
import selectors
import socket
import time

from . import listeners
from .config import Bind

log = logging.getLogger("sticky_cluster.master")

ACCEPT_BATCH = 8
"""Connections accepted at most per wake-up of the listener."""


@dataclasses.dataclass(eq=False)
class Connection:
    """One client of a :class:`SelectorServer`."""

    sock: socket.socket
    deadline: float | None
    """When the connection is closed by :meth:`SelectorServer.tick` (None: never)."""
    received: bytearray = dataclasses.field(default_factory=bytearray)
    """The request bytes read so far (at most the server's ``request_limit`` and a byte)."""
    answered: bool = False
    """The request was taken: later bytes are not buffered."""
    out: bytearray = dataclasses.field(default_factory=bytearray)
    """Bytes of the answer not sent yet."""
    close_after: bool = False
    """Close once :attr:`out` is sent."""


class SelectorServer:
    """Serves one request per connection on ``bind``, from the master's selector.

    :param bind: where to listen.
    :param label: names the server in log lines ("status server", "control socket").
    :param request_limit: bytes a request may have; more is the subclass's error to answer.
    :param connection_limit: connections open at once; more are closed at accept.
    :param timeout: seconds a connection gets before it is closed (the subclass may
                    lift the deadline once it has the request).
    """

    read_after_request = False
    """Keep reading once the request is taken, to see the client leave (its bytes are
    ignored); otherwise only the answer is written."""

    def __init__(self, bind: Bind, *, label: str, request_limit: int, connection_limit: int,
                 timeout: float) -> None:
        self.bind = bind
        self.label = label
        self.request_limit = request_limit
        self.connection_limit = connection_limit
        self.timeout = timeout
        self._listener: socket.socket | None = None
        self._selector: selectors.BaseSelector | None = None
        self._connections: dict[socket.socket, Connection] = {}

    def open(self, selector: selectors.BaseSelector) -> None:
        """Listen, and serve from ``selector``; ConfigError (one line) when it cannot listen."""
        self._listener = self._listen()
        self._selector = selector
        selector.register(self._listener, selectors.EVENT_READ, self._on_accept)

    def close(self) -> None:
        """Stop listening and close every connection."""
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
        """Close the connections past their deadline."""
        for conn in list(self._connections.values()):
            if conn.deadline is not None and now >= conn.deadline:
                self._close(conn)

    # ------------------------------------------------------------ for subclasses

    def _listen(self) -> socket.socket:
        """The listening socket (a subclass may set its mode or check its path)."""
        return listeners.open_listener(self.bind)

    def _received(self, conn: Connection) -> None:
        """More of the request is in ``conn.received``: answer it when it is whole.

        Set ``conn.answered`` once the request is taken, and :meth:`_send` the answer.
        """
        raise NotImplementedError

    def _send(self, conn: Connection, data: bytes, *, close_after: bool) -> None:
        """Queue ``data`` for the client and send what the socket takes now."""
        conn.out += data
        conn.close_after = close_after
        self._flush(conn)

    def _close(self, conn: Connection) -> None:
        self._connections.pop(conn.sock, None)
        self._unregister(conn.sock)
        conn.sock.close()

    # ---------------------------------------------------------------- plumbing

    def _on_accept(self, listener: socket.socket, _mask: int) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                sock, _address = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("%s: accept failed: %s", self.label, exc.strerror)
                return
            if len(self._connections) >= self.connection_limit:
                sock.close()
                continue
            sock.setblocking(False)
            self._connections[sock] = Connection(sock, time.monotonic() + self.timeout)
            assert self._selector is not None
            self._selector.register(sock, selectors.EVENT_READ, self._on_event)

    def _on_event(self, sock: socket.socket, mask: int) -> None:
        conn = self._connections.get(sock)
        if conn is None:
            return
        if mask & selectors.EVENT_WRITE:
            self._flush(conn)
        if not mask & selectors.EVENT_READ or sock not in self._connections:
            return
        try:
            data = sock.recv(self.request_limit - len(conn.received) + 1
                             if not conn.answered else self.request_limit)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._close(conn)  # the client left
            return
        if not conn.answered:
            conn.received += data
            self._received(conn)

    def _flush(self, conn: Connection) -> None:
        assert self._selector is not None
        try:
            sent = conn.sock.send(conn.out)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._close(conn)
            return
        del conn.out[:sent]
        if not conn.out and conn.close_after:
            self._close(conn)
            return
        reading = not conn.answered or self.read_after_request
        events = (selectors.EVENT_READ if reading else 0) | (
            selectors.EVENT_WRITE if conn.out else 0)
        self._selector.modify(conn.sock, events or selectors.EVENT_READ, self._on_event)

    def _unregister(self, sock: socket.socket) -> None:
        if self._selector is None:
            return
        try:
            self._selector.unregister(sock)
        except (KeyError, ValueError):
            pass
