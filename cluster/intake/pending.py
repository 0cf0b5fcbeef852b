"""The connections the master holds while it waits for their first bytes.

A :class:`Pending` connection is registered in the master's selector until it is routed
or closed. The set is bounded: past :data:`PENDING_LIMIT` the intake
(:mod:`cluster.intake.intake`) decides at once instead of waiting, so a flood of silent
connections costs the master a fixed amount of memory and file descriptors. Every
connection waits the same time, so the oldest is always the first to expire: a dict in
insertion order is the whole timer wheel.
"""
from __future__ import annotations

import dataclasses
import selectors
import socket
from typing import Callable, Iterator

PENDING_LIMIT = 1024
"""Most connections waiting for their first bytes at once."""

Address = tuple[str, int]


@dataclasses.dataclass(eq=False, slots=True)
class Pending:
    """One accepted connection that is not routed yet."""

    sock: socket.socket
    client: Address | None
    """The client's (ip, port): the peer's, or the PROXY header's once consumed; None
    for a Unix-socket peer without one."""
    since: float
    """When it was accepted (``time.monotonic()``), earlier by the time the kernel held it
    (``TCP_DEFER_ACCEPT``): it is decided with what it has once the peek timeout has passed."""
    proxied: bool
    """Whether the PROXY header is consumed (or none is expected)."""
    tcp: bool = True
    """Whether it came from a TCP listener, whose poll honours ``SO_RCVLOWAT`` (a Unix
    socket's does not); kept here, as ``sock.family`` builds an enum member per read."""
    lowat: int = 1
    """The socket's SO_RCVLOWAT: it is readable again once more bytes than seen arrive."""


class PendingSet:
    """The waiting connections, oldest first, each registered for reading.

    :param limit: the most connections it holds.
    :param on_readable: called with a connection that has new bytes (or was closed).
    """

    def __init__(self, limit: int, on_readable: Callable[[Pending], None]) -> None:
        self._limit = limit
        self._on_readable = on_readable
        self._by_fd: dict[int, Pending] = {}
        self._selector: selectors.BaseSelector | None = None

    def attach(self, selector: selectors.BaseSelector) -> None:
        """Register waiting connections in ``selector`` (the master's loop)."""
        self._selector = selector

    def __len__(self) -> int:
        return len(self._by_fd)

    def __contains__(self, conn: Pending) -> bool:
        return self._by_fd.get(conn.sock.fileno()) is conn

    @property
    def full(self) -> bool:
        """Whether no more connections may wait."""
        return len(self._by_fd) >= self._limit

    def add(self, conn: Pending) -> None:
        """Wait for ``conn`` to become readable (the caller checked :attr:`full`)."""
        assert self._selector is not None
        self._by_fd[conn.sock.fileno()] = conn
        self._selector.register(conn.sock, selectors.EVENT_READ, self._readable)

    def discard(self, conn: Pending) -> None:
        """Stop waiting for ``conn``, if it waits; its socket stays open."""
        if self._by_fd.pop(conn.sock.fileno(), None) is not None and self._selector is not None:
            self._selector.unregister(conn.sock)

    def expired(self, now: float, timeout: float) -> Iterator[Pending]:
        """Take out and yield, oldest first, every connection that has waited ``timeout``
        seconds by ``now`` (``now - conn.since >= timeout``)."""
        while self._by_fd:
            conn = next(iter(self._by_fd.values()))
            if now - conn.since < timeout:
                return
            self.discard(conn)
            yield conn

    def close_all(self) -> None:
        """Close every waiting connection without touching the selector.

        For a new child after fork (whose copy of the selector is the master's epoll
        instance: unregistering there would unregister in the master) and for the end.
        """
        for conn in self._by_fd.values():
            conn.sock.close()
        self._by_fd.clear()

    def _readable(self, sock: socket.socket, _mask: int) -> None:
        conn = self._by_fd.get(sock.fileno())
        if conn is not None:
            self._on_readable(conn)
