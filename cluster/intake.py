"""The connections the master looks at before it routes them.

Routing (``--route``) decides how much of a connection the master must see:

* ``ip``: nothing; it is handed off at accept, by a consistent hash of the client IP.
* ``sid`` (default): its request line. The master peeks (``MSG_PEEK``, nothing
  consumed) at it for a ``sid=``; TCP listeners get ``TCP_DEFER_ACCEPT``, so accept()
  usually returns with the request already there: one peek, no extra trip through the
  loop.

The client IP is the peer's, or, when enabled, the one of a PROXY protocol header
(read and consumed here, so the worker reads plain HTTP) or of ``X-Forwarded-For``
from a trusted peer. It is handed to the worker, where it becomes ``REMOTE_ADDR``.

A connection whose bytes are not all there yet waits in a bounded
:class:`~cluster.pending.PendingSet`, without spinning: a socket only peeked at stays
readable, so its ``SO_RCVLOWAT`` is raised past what was seen (TCP's poll honours it).
It is routed with what it sent after ``--peek-timeout`` (a silent one by IP), or closed
when a PROXY header was required and is missing or bad. Once it is looked at, the
:class:`~cluster.dispatch.Dispatcher` chooses its worker and hands it over.
"""
from __future__ import annotations

import errno
import logging
import selectors
import socket
import time

from .config import Settings
from .dispatch import Dispatcher
from .peek import INCOMPLETE, ProxyError, forwarded_for, parse_proxy, request_line_prefix
from .pending import PENDING_LIMIT, Pending, PendingSet

log = logging.getLogger("sticky_cluster.master")

ACCEPT_BATCH = 64
"""Connections accepted per readiness event before the loop looks at other work."""

OUT_OF_FILES = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}

REQUEST_LINE_LIMIT = 4096
"""Bytes of request the master waits for to see a whole request line."""
HEAD_LIMIT = 16384
"""Bytes the master peeks at most: a PROXY v2 header with its TLVs, or request headers."""
DEFER_ACCEPT = 1
"""Seconds a TCP listener's kernel holds a connection that has sent nothing yet."""

_PEEK = socket.MSG_PEEK | socket.MSG_DONTWAIT


class Intake:
    """Accepts connections, reads what routing needs of them, and passes them on.

    :param dispatcher: chooses the worker of each connection and hands it over.
    :param settings: ``route``, ``proxy_protocol``, ``forwarded_allow_ips`` and
                     ``peek_timeout`` are used.
    """

    def __init__(self, dispatcher: Dispatcher, settings: Settings) -> None:
        self._dispatcher = dispatcher
        self._by_sid = settings.route == "sid"
        self._proxy_protocol = settings.proxy_protocol
        self._trusted = settings.trusted_proxies
        self._peek_timeout = settings.peek_timeout
        self._peek_size = HEAD_LIMIT if self._proxy_protocol or self._trusted else REQUEST_LINE_LIMIT
        self._pending = PendingSet(PENDING_LIMIT, lambda conn: self._examine(conn, final=False))
        self._scratch = bytearray(HEAD_LIMIT)
        self._warned_full = False
        self.accepted = 0
        """Connections accepted."""
        self.timed_out = 0
        """Connections routed (or closed) because they sent too little within the peek timeout."""
        self.refused = 0
        """Connections closed for a missing, bad or truncated PROXY header."""

    @property
    def pending_count(self) -> int:
        """Connections waiting for their first bytes."""
        return len(self._pending)

    @property
    def peeking(self) -> bool:
        """Whether connections are looked at before they are handed off."""
        return self._by_sid or self._proxy_protocol or bool(self._trusted)

    def attach(self, selector: selectors.BaseSelector) -> None:
        """Wait for pending connections in ``selector``, the master's loop."""
        self._pending.attach(selector)

    def prepare(self, listener: socket.socket) -> None:
        """Set up a listening socket: TCP_DEFER_ACCEPT when connections are peeked at."""
        if self.peeking and listener.family != socket.AF_UNIX and hasattr(socket, "TCP_DEFER_ACCEPT"):
            listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, DEFER_ACCEPT)

    def close(self) -> None:
        """Close the connections still waiting (the master stops, or a new child forgets them)."""
        self._pending.close_all()

    # ------------------------------------------------------------------- accept

    def accept_from(self, listener: socket.socket) -> bool:
        """Accept and route up to a batch of clients; False when out of file descriptors."""
        peeking = self.peeking
        deferred = peeking and listener.family != socket.AF_UNIX
        for _ in range(ACCEPT_BATCH):
            try:
                fd, address = listener._accept()  # type: ignore[attr-defined]  # fd, no socket object
            except (BlockingIOError, InterruptedError):
                return True
            except OSError as exc:
                if exc.errno in OUT_OF_FILES:
                    return False
                continue  # the client went away before accept (ECONNABORTED …)
            self.accepted += 1
            client = (address[0], address[1]) if isinstance(address, tuple) else None
            if not peeking:
                self._dispatcher.route(fd, client, b"")
                continue
            sock = socket.socket(listener.family, socket.SOCK_STREAM, 0, fileno=fd)
            conn = Pending(sock, client, time.monotonic() + self._peek_timeout,
                           proxied=not self._proxy_protocol)
            self._examine(conn, final=False, deferred=deferred)
        return True

    def expire(self, now: float) -> None:
        """Route or close the pending connections whose peek timeout has passed."""
        for conn in self._pending.expired(now):
            self.timed_out += 1
            self._examine(conn, final=True)
        if self._warned_full and len(self._pending) < PENDING_LIMIT // 2:
            self._warned_full = False

    # ------------------------------------------------------------------ examine

    def _examine(self, conn: Pending, final: bool, deferred: bool = False) -> None:
        """Route ``conn``, close it, or let it wait for more bytes.

        ``final``: decide now with what is there. ``deferred``: just accepted from a
        TCP_DEFER_ACCEPT listener, where a silent connection has already waited.
        """
        waiting = conn in self._pending
        if not waiting and not final and self._pending.full:
            final = True
            if not self._warned_full:
                self._warned_full = True
                log.warning("%d connections wait for their first bytes, the most: new ones are "
                            "routed at once on what they have sent%s", PENDING_LIMIT,
                            " (closed without a PROXY header)" if self._proxy_protocol else "")
        try:
            head: bytes | None = conn.sock.recv(self._peek_size, _PEEK)
        except BlockingIOError:
            head = None
        except OSError:
            head = b""
        if head == b"":  # closed or reset before being routed
            self._close(conn)
            return
        if head is None and deferred:
            conn.deadline -= DEFER_ACCEPT
        elif head is not None and waiting and len(head) < conn.lowat:
            final = True  # woken with no new byte: the peer shut its side
        if not conn.proxied:
            if head is None:
                if final:
                    self._refuse(conn, "sent no PROXY header")
                else:
                    self._wait(conn, 1)
                return
            length = self._take_proxy_header(conn, head, final)
            if length is None:
                return
            head = head[length:] or None
        if head is None:
            if final or not self._needs_request(conn):
                self._route(conn, b"")
            else:
                self._wait(conn, 1)
        elif not final and self._can_wait_for_more(conn) and self._incomplete(conn, head):
            self._wait(conn, len(head) + 1)
        else:
            self._route(conn, head)

    def _take_proxy_header(self, conn: Pending, head: bytes, final: bool) -> int | None:
        """Consume the PROXY header at the start of ``head``; return its length.

        Returns None when ``conn`` is closed, or left waiting for the rest of the header.
        """
        try:
            header = parse_proxy(head)
        except ProxyError as exc:
            self._refuse(conn, str(exc))
            return None
        if header is INCOMPLETE:
            if final or len(head) >= HEAD_LIMIT or not self._can_wait_for_more(conn):
                self._refuse(conn, "truncated PROXY header")
            else:
                self._wait(conn, len(head) + 1)
            return None
        if not self._consume(conn.sock, header.length):
            self._close(conn)
            return None
        conn.proxied = True
        conn.client = header.client or conn.client
        self._set_lowat(conn, 1)
        return header.length

    def _needs_request(self, conn: Pending) -> bool:
        """Whether routing ``conn`` looks at its request (else its address is enough)."""
        return self._by_sid or self._trusts(conn)

    def _incomplete(self, conn: Pending, head: bytes) -> bool:
        """Whether more of the request would tell more, and may still come."""
        if self._trusts(conn):  # X-Forwarded-For: the whole head
            ended = b"\n\r\n" in head or b"\n\n" in head
            return not ended and len(head) < HEAD_LIMIT and (b"\n" in head or request_line_prefix(head))
        return (self._by_sid and b"\n" not in head and len(head) < REQUEST_LINE_LIMIT
                and request_line_prefix(head))

    def _trusts(self, conn: Pending) -> bool:
        """Whether ``conn``'s X-Forwarded-For is believed (a Unix-socket peer is local)."""
        if not self._trusted:
            return False
        return conn.client is None or conn.client[0] in self._trusted

    @staticmethod
    def _can_wait_for_more(conn: Pending) -> bool:
        """Whether the kernel wakes us only for more bytes than seen (TCP honours SO_RCVLOWAT)."""
        return conn.sock.family != socket.AF_UNIX

    def _wait(self, conn: Pending, lowat: int) -> None:
        """Leave ``conn`` pending until more than ``lowat - 1`` bytes are there."""
        self._set_lowat(conn, lowat)
        if conn not in self._pending:
            self._pending.add(conn)

    # ------------------------------------------------------------------- finish

    def _route(self, conn: Pending, head: bytes) -> None:
        """Pass ``conn`` on, with the client address it has by now and its request's head."""
        client = conn.client
        if head and self._trusts(conn):
            forwarded = forwarded_for(head, self._trusted)
            if forwarded is not None:  # the port stays the proxy's: unique per connection
                client = (forwarded, client[1] if client else 0)
        self._pending.discard(conn)
        self._set_lowat(conn, 1)
        self._dispatcher.route(conn.sock.detach(), client, head)

    def _refuse(self, conn: Pending, reason: str) -> None:
        log.debug("closed a connection from %s: %s", conn.client, reason)
        self.refused += 1
        self._close(conn)

    def _close(self, conn: Pending) -> None:
        self._pending.discard(conn)
        conn.sock.close()

    def _consume(self, sock: socket.socket, size: int) -> bool:
        """Read and drop ``size`` bytes that a peek has shown to be there."""
        view = memoryview(self._scratch)
        while size > 0:
            try:
                got = sock.recv_into(view, min(size, len(view)), socket.MSG_DONTWAIT)
            except OSError:
                return False
            if not got:
                return False
            size -= got
        return True

    @staticmethod
    def _set_lowat(conn: Pending, lowat: int) -> None:
        if conn.lowat != lowat:
            try:
                conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, lowat)
            except OSError:
                return
            conn.lowat = lowat
