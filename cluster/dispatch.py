"""The master's hot path: accept a client, choose its worker, hand the socket over.

Routing (``--route``):

* ``ip``: hand off at accept, by a consistent hash of the client IP.
* ``sid`` (default): peek (``MSG_PEEK``, nothing consumed) at the request line; a
  ``sid=`` made by a live worker (serving or draining) goes to that worker, anything
  else by the client IP. TCP listeners get ``TCP_DEFER_ACCEPT``, so accept() usually
  returns with the request already there: one peek, no extra trip through the loop.

The client IP is the peer's, or, when enabled, the one of a PROXY protocol header
(read and consumed here, so the worker reads plain HTTP) or of ``X-Forwarded-For``
from a trusted peer. It is handed to the worker, where it becomes ``REMOTE_ADDR``.

A connection whose bytes are not all there yet waits in a bounded
:class:`~cluster.pending.PendingSet`, without spinning: a socket only peeked at stays
readable, so its ``SO_RCVLOWAT`` is raised past what was seen (TCP's poll honours it).
It is routed with what it sent after ``--peek-timeout`` (a silent one by IP), or closed
when a PROXY header was required and is missing or bad. After the hand-off the master
closes its copy of the socket and never sees the connection again, unless a worker
hands it back: a keep-alive connection whose next request names a session of another
worker comes back with the bytes the worker read (:meth:`Dispatcher.hand_back`), and
goes on, with them, to the owner. The master copies those few bytes once; it never
reads the connection itself, and keeps no per-session state.

A request that names no live worker's session is placed (:mod:`cluster.placement`,
``--balance``). While no worker serves (cold start, all respawning), the master does
not accept (connections wait in the listen backlog), and the few it already holds
(waiting for their first bytes, or stranded on a dead worker) wait in a bounded list
until one serves.
"""
from __future__ import annotations

import errno
import logging
import os
import random
import selectors
import socket
import time
from workers.sids import tag_of

from . import channel, placement
from .config import Settings
from .peek import INCOMPLETE, ProxyError, forwarded_for, parse_proxy, request_line_prefix, request_sid
from .pending import PENDING_LIMIT, Address, Pending, PendingSet
from .pool import WorkerPool
from .worker import Worker

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
HOLD_LIMIT = 1024
"""Connections the master holds at most while no worker serves; past that, closed."""

_PEEK = socket.MSG_PEEK | socket.MSG_DONTWAIT


class Dispatcher:
    """Accepts connections and hands each one to the worker it belongs to.

    :param pool: the workers to route to: the serving worker of each slot, the owner
                 of a tag.
    :param settings: ``route``, ``balance``, ``proxy_protocol``, ``forwarded_allow_ips``,
                     and ``peek_timeout`` are used.
    """

    def __init__(self, pool: WorkerPool, settings: Settings) -> None:
        self._pool = pool
        self._by_sid = settings.route == "sid"
        self._balance = settings.balance if self._by_sid else "ip"
        self._rng = random.Random()
        self._held: list[tuple[int, Address | None, bytes | None]] = []
        self._releasing = False
        self._proxy_protocol = settings.proxy_protocol
        self._trusted = settings.trusted_proxies
        self._peek_timeout = settings.peek_timeout
        self._peek_size = HEAD_LIMIT if self._proxy_protocol or self._trusted else REQUEST_LINE_LIMIT
        self._pending = PendingSet(PENDING_LIMIT, lambda conn: self._examine(conn, final=False))
        self._scratch = bytearray(HEAD_LIMIT)
        self._warned_full = False
        self._unkeyed = 0
        self.accepted = 0
        """Connections accepted."""
        self.handed_off = 0
        """Connections handed to a worker."""
        self.by_sid = 0
        """Connections handed to the worker named by their sid."""
        self.rerouted = 0
        """Connections that went to another slot because their slot's channel was full."""
        self.dropped = 0
        """Connections closed because no worker could take them."""
        self.timed_out = 0
        """Connections routed (or closed) because they sent too little within the peek timeout."""
        self.refused = 0
        """Connections closed for a missing, bad or truncated PROXY header."""
        self.handed_back = 0
        """Connections a worker handed back for a request of another worker's session,
        taken by that worker (one whose channel was full is counted as ``rerouted``)."""
        self.returned = 0
        """Hand-backs that no live worker owned: taken back by their worker, which answers."""
        self.handback_seconds = 0.0
        """CPU time the master spent on hand-backs."""
        self.held = 0
        """Connections held while no worker served (or every worker's channel was full)."""
        self.past_full = 0
        """Placements that passed over a full worker."""
        self.past_late = 0
        """Placements that passed over a late (silent) worker."""

    @property
    def pending_count(self) -> int:
        """Connections waiting for their first bytes."""
        return len(self._pending)

    @property
    def balance(self) -> str:
        """How a request that names no live session is placed: ``least-loaded``,
        ``random`` or ``ip`` (always ``ip`` with ``--route ip``)."""
        return self._balance

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

    def summary(self) -> str:
        """The counters, for the log."""
        each = self.handback_seconds / self.handed_back * 1e6 if self.handed_back else 0.0
        return (f"{self.accepted} accepted, {self.by_sid} by sid, {self.rerouted} rerouted, "
                f"{self.handed_back} handed back ({each:.0f} µs CPU each), "
                f"{self.returned} returned, "
                f"{self.past_full} past a full worker, {self.past_late} past a late worker, "
                f"{self.held} held, {self.timed_out} timed out, {self.refused} refused, "
                f"{self.dropped} dropped")

    def close(self) -> None:
        """Close the connections still waiting (the master stops, or a new child forgets them)."""
        self._pending.close_all()
        for fd, _client, _data in self._held:
            os.close(fd)
        self._held.clear()

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
                self._deliver(fd, client, None)
                continue
            sock = socket.socket(listener.family, socket.SOCK_STREAM, 0, fileno=fd)
            conn = Pending(sock, client, time.monotonic() + self._peek_timeout,
                           proxied=not self._proxy_protocol)
            self._examine(conn, final=False, deferred=deferred)
        return True

    def hand_off(self, fd: int, address: tuple[str, int] | str) -> None:
        """Give the client socket ``fd`` to the worker its address routes to."""
        self._deliver(fd, address if isinstance(address, tuple) else None, None)

    def hand_back(self, sender: Worker, fd: int, address: tuple[str, int], data: bytes) -> None:
        """Pass a connection ``sender`` handed back to the worker that owns its request.

        ``address`` is the client's and ``data`` the bytes ``sender`` read (checked by
        :func:`cluster.channel.parse_from_worker`). When no other live worker owns the
        request's session, the connection goes back to ``sender``, which answers it as it
        would any unknown sid (the first request of a resumed connection is never handed back).
        """
        started = time.process_time()
        owner = self._owner(data)
        home = owner is None or owner is sender
        if self._deliver(fd, address if address[0] else None, sender if home else owner, data):
            if home:
                self.returned += 1
            else:
                self.handed_back += 1
        self.handback_seconds += time.process_time() - started

    def redeliver(self, packet: bytes, fd: int) -> None:
        """Route again a hand-off (or a resumed connection) queued for a worker that died."""
        if packet[0] == channel.Kind.RESUME:
            address, data = channel.split_resumed(packet[2:])
            self._deliver(fd, address if address[0] else None, self._owner(data), data)
        else:
            self.hand_off(fd, channel.decode_address(packet[2:]))

    @property
    def holding(self) -> bool:
        """Whether connections wait for a worker that takes them (:meth:`release`)."""
        return bool(self._held)

    def release(self) -> None:
        """Route the connections held while no worker could take them: when one serves
        again, and on every turn of the loop while some wait."""
        if not self._pool.serving:
            return
        held, self._held = self._held, []
        self._releasing = True  # one that is held again is not counted again
        try:
            for fd, client, data in held:
                self._deliver(fd, client, self._owner(data) if data else None, data)
        finally:
            self._releasing = False

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
        """Hand ``conn`` off: by the sid in ``head`` when it names a live worker, else by IP."""
        client = conn.client
        if head and self._trusts(conn):
            forwarded = forwarded_for(head, self._trusted)
            if forwarded is not None:  # the port stays the proxy's: unique per connection
                client = (forwarded, client[1] if client else 0)
        owner = self._owner(head) if self._by_sid else None
        self._pending.discard(conn)
        self._set_lowat(conn, 1)
        self._deliver(conn.sock.detach(), client, owner)

    def _owner(self, head: bytes) -> Worker | None:
        """The live worker that made the sid of the request in ``head``, if any."""
        sid = request_sid(head)
        tag = tag_of(sid) if sid else None
        return self._pool.owner(tag) if tag is not None else None

    def _deliver(self, fd: int, client: Address | None, owner: Worker | None,
                 data: bytes | None = None) -> bool:
        """Send ``fd`` to ``owner``, else to the first placed worker that takes it.

        ``data``: the bytes of the connection already read (a hand-back), which the
        worker serves first. With no worker serving, the connection is held. True when
        ``owner`` took it.
        """
        if client is None:  # a Unix-socket client has no address: spread them
            address = ("", 0)
            self._unkeyed += 1
            key = self._unkeyed.to_bytes(8, "little")
        else:
            address = client
            key = client[0].encode()
        packet = (channel.handoff_packet(address) if data is None
                  else channel.resume_packet(address, data))
        if owner is not None and self._send(owner, packet, fd):
            self.by_sid += 1
            return True
        serving = self._pool.serving
        if not serving:
            self._hold(fd, client, data)
            return False
        for index, slot in enumerate(self._placement(key, serving)):
            worker = serving[slot]
            if self._send(worker, packet, fd):
                worker.placed += 1
                self.rerouted += owner is not None or index > 0
                return False
        self._hold(fd, client, data)  # every channel is full or broken: try again soon
        return False

    def _placement(self, key: bytes, serving: dict[int, Worker]) -> list[int]:
        """The serving slots in the order a new client tries them (``--balance``)."""
        candidates = []
        full = late = False
        for slot, worker in serving.items():
            full |= worker.full
            late |= worker.late
            candidates.append(placement.Candidate(slot, worker.sessions + worker.placed,
                                                  not (worker.full or worker.late)))
        slots = placement.order(self._balance, key, candidates, self._rng)
        first = serving[slots[0]]
        if (full or late) and not (first.full or first.late):
            self.past_full += full
            self.past_late += late
        return slots

    def _hold(self, fd: int, client: Address | None, data: bytes | None) -> None:
        """Keep ``fd`` until a worker takes it (:meth:`release`); close it past the limit."""
        if len(self._held) >= HOLD_LIMIT:
            os.close(fd)
            self.dropped += 1
            return
        self.held += not self._releasing
        self._held.append((fd, client, data))

    def _send(self, worker: Worker, packet: bytes, fd: int) -> bool:
        if not worker.send(packet, fd):
            return False
        self.handed_off += 1
        return True

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

