"""A small one-request server on the master's selector loop: the base of the operators' servers.

The status endpoint (:mod:`cluster.ops.status_http`) and the control socket
(:mod:`cluster.ops.control_socket`) take one request per connection from a listener of
their own, registered in the master's selector next to the client listeners. What they
share is here, once: accept (a few per wake-up), a per-connection buffer of the request
with a bounded read, a non-blocking write of the answer (write interest only while some of
it waits), deadlines checked on the loop's tick, and the close.

It must never block the loop, and never touch the client listeners or the hand-off
path; and no client may take it over:

- a request that is already there when its connection is accepted is read and answered
  at once, without ever entering the selector (a prober's request usually is);
- the request must arrive within ``head_timeout`` of the accept;
- when every connection slot is taken, a new connection takes the slot of a slow one
  (still sending its request or not reading its answer): the oldest of the peer address
  that holds the most, so that one client cannot push out the others;
- at most ``accept_budget`` connections are accepted between two ticks: past that the
  listener rests until the next tick (the kernel's backlog holds the rest), which bounds
  what the server may cost the master's loop.

What a request means and what to answer is the subclass's business
(:meth:`SelectorServer._received`).
"""
from __future__ import annotations

import collections
import dataclasses
import logging
import selectors
import socket
import time

from cluster.intake import listeners
from cluster.setup.config import Bind

log = logging.getLogger("sticky_cluster.master")

ACCEPT_BATCH = 8
"""Connections accepted at most per wake-up of the listener."""


@dataclasses.dataclass(eq=False)
class Connection:
    """One client of a :class:`SelectorServer`."""

    sock: socket.socket
    deadline: float | None
    """When the connection is closed by :meth:`SelectorServer.tick` (None: never)."""
    peer: object = ""
    """The client's address without its port (its host; ``""`` on a Unix socket)."""
    received: bytearray = dataclasses.field(default_factory=bytearray)
    """The request bytes read so far (at most the server's ``request_limit`` and a byte)."""
    answered: bool = False
    """The request was taken: later bytes are not buffered."""
    out: bytearray = dataclasses.field(default_factory=bytearray)
    """Bytes of the answer not sent yet."""
    close_after: bool = False
    """Close once :attr:`out` is sent."""
    watched: bool = False
    """Registered in the selector (a connection answered at accept never is)."""

    @property
    def slow(self) -> bool:
        """Still sending its request, or not reading its answer: its slot may be taken."""
        return not self.answered or bool(self.out)


class SelectorServer:
    """Serves one request per connection on ``bind``, from the master's selector.

    :param bind: where to listen.
    :param label: names the server in log lines ("status server", "control socket").
    :param request_limit: bytes a request may have; more is the subclass's error to answer.
    :param connection_limit: connections open at once; a new one past it takes the slot
                             of a slow one, or is closed at accept when none is slow.
    :param timeout: seconds a connection gets to read its answer once it has sent its
                    request (the subclass may lift the deadline).
    :param head_timeout: seconds a connection gets to send its request (default: ``timeout``).
    :param accept_budget: connections accepted at most between two :meth:`tick` calls
                          (None: no bound).
    """

    read_after_request = False
    """Keep reading once the request is taken, to see the client leave (its bytes are
    ignored); otherwise only the answer is written."""

    def __init__(self, bind: Bind, *, label: str, request_limit: int, connection_limit: int,
                 timeout: float, head_timeout: float | None = None,
                 accept_budget: int | None = None) -> None:
        self.bind = bind
        self.label = label
        self.request_limit = request_limit
        self.connection_limit = connection_limit
        self.timeout = timeout
        self.head_timeout = timeout if head_timeout is None else head_timeout
        self.accept_budget = accept_budget
        self._listener: socket.socket | None = None
        self._selector: selectors.BaseSelector | None = None
        self._connections: dict[socket.socket, Connection] = {}
        """Open connections, oldest first."""
        self._accepted = 0
        """Connections accepted since the last tick."""
        self._resting = False
        """The listener is out of the selector until the next tick (the budget is spent)."""

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
            if not self._resting:
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
        """Close the connections past their deadline; renew the accept budget."""
        for conn in list(self._connections.values()):
            if conn.deadline is not None and now >= conn.deadline:
                self._close(conn)
        self._accepted = 0
        if self._resting and self._listener is not None and self._selector is not None:
            self._resting = False
            self._selector.register(self._listener, selectors.EVENT_READ, self._on_accept)

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
        """Queue ``data`` for the client and send what the socket takes now.

        The client then has ``timeout`` seconds to read it (unless the deadline was lifted).
        """
        conn.out += data
        conn.close_after = close_after
        if conn.deadline is not None:
            conn.deadline = time.monotonic() + self.timeout
        self._flush(conn)

    def _close(self, conn: Connection) -> None:
        self._connections.pop(conn.sock, None)
        if conn.watched:
            self._unregister(conn.sock)
        conn.sock.close()

    # ---------------------------------------------------------------- plumbing

    def _on_accept(self, listener: socket.socket, _mask: int) -> None:
        for _ in range(ACCEPT_BATCH):
            if self.accept_budget is not None and self._accepted >= self.accept_budget:
                self._rest()
                return
            try:
                sock, address = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("%s: accept failed: %s", self.label, exc.strerror)
                return
            self._accepted += 1
            if len(self._connections) >= self.connection_limit and not self._make_room():
                sock.close()
                continue
            sock.setblocking(False)
            conn = Connection(sock, time.monotonic() + self.head_timeout,
                              peer=address[0] if isinstance(address, tuple) else "")
            self._connections[sock] = conn
            self._read(conn)  # the request is often there already: answer it now
            if sock in self._connections and not conn.watched:
                self._watch(conn)

    def _rest(self) -> None:
        """Take the listener out of the selector until the next tick."""
        if self._listener is not None and not self._resting:
            self._resting = True
            self._unregister(self._listener)

    def _make_room(self) -> bool:
        """Close a slow connection (:attr:`Connection.slow`) for a new one: the oldest of
        the peer that holds the most slow ones. False when no connection is slow."""
        slow = [conn for conn in self._connections.values() if conn.slow]
        if not slow:
            return False
        held = collections.Counter(conn.peer for conn in slow)
        most = max(held.values())
        self._close(next(conn for conn in slow if held[conn.peer] == most))
        return True

    def _on_event(self, sock: socket.socket, mask: int) -> None:
        conn = self._connections.get(sock)
        if conn is None:
            return
        if mask & selectors.EVENT_WRITE:
            self._flush(conn)
        if mask & selectors.EVENT_READ and sock in self._connections:
            self._read(conn)

    def _read(self, conn: Connection) -> None:
        sock = conn.sock
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
        if conn.watched:
            self._watch(conn)

    def _watch(self, conn: Connection) -> None:
        """Register ``conn`` in the selector for what it waits for (or update that)."""
        assert self._selector is not None
        reading = not conn.answered or self.read_after_request
        events = (selectors.EVENT_READ if reading else 0) | (
            selectors.EVENT_WRITE if conn.out else 0)
        if conn.watched:
            self._selector.modify(conn.sock, events or selectors.EVENT_READ, self._on_event)
        else:
            conn.watched = True
            self._selector.register(conn.sock, events or selectors.EVENT_READ, self._on_event)

    def _unregister(self, sock: socket.socket) -> None:
        if self._selector is None:
            return
        try:
            self._selector.unregister(sock)
        except (KeyError, ValueError):
            pass
