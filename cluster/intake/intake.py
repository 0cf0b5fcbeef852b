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
:class:`~cluster.intake.pending.PendingSet`, without spinning: a socket only peeked at stays
readable, so its ``SO_RCVLOWAT`` is raised past what was seen (TCP's poll honours it).
It is routed with what it sent after ``--peek-timeout`` (a silent one by IP), or closed
when a PROXY header was required and is missing or bad. Once it is looked at, the
:class:`~cluster.intake.dispatch.Dispatcher` chooses its worker and hands it over.

What to do with a connection, given what it has sent, is decided in
:mod:`cluster.intake.intake_decision`, pure and tested on recorded bytes; this module only
does the I/O that the decision asks for. Keep it that way: a new rule goes there.
"""
from __future__ import annotations

import contextlib
import dataclasses
import errno
import logging
import os
import selectors
import socket
import time

from cluster.hosts.responses import busy
from cluster.protocol.bursts import BurstLog
from cluster.protocol.sids import opens_session
from cluster.protocol.trust import TrustCache
from cluster.setup.config import Settings

from .dispatch import Dispatcher
from .fast_path import FastHandOff
from .intake_decision import (HEAD_LIMIT, IntakeRules, Refuse, Route, Seen, Wait, decide,
                              decide_among_hosts)
from .peek import ProxyHeader
from .pending import PENDING_LIMIT, Address, Pending, PendingSet

log = logging.getLogger("sticky_cluster.master")

ACCEPT_BATCH = 64
"""Connections accepted per readiness event before the loop looks at other work."""

OUT_OF_FILES = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}

DEFER_ACCEPT = 1
"""Seconds a TCP listener's kernel holds a connection that has sent nothing yet."""

_PEEK = socket.MSG_PEEK | socket.MSG_DONTWAIT

BUSY = busy()
"""The answer to a new session turned away (:meth:`Intake._turn_away`)."""

PEER_REFUSAL_REPORT = 10.0
"""Seconds between two log lines about peers refused by ``--proxy-allow-from``."""


class Intake:
    """Accepts connections, reads what routing needs of them, and passes them on.

    :param dispatcher: chooses the worker of each connection and hands it over.
    :param settings: ``route``, ``proxy_protocol``, ``proxy_allow_from``,
                     ``forwarded_allow_ips`` and ``peek_timeout`` are used.
    """

    def __init__(self, dispatcher: Dispatcher, settings: Settings,
                 fast: FastHandOff | None = None) -> None:
        self._dispatcher = dispatcher
        self._fast = fast
        """The hand-off loop in C (:mod:`cluster.intake.fast_path`), when it serves these settings."""
        self._rules = IntakeRules.from_settings(settings)
        self._decide = decide if self._rules.peers is None else decide_among_hosts
        """What decides a connection: with several hosts, one that knows the peers."""
        self._peek_size = self._rules.peek_size
        self._families: dict[int, int] = {}
        """Each listener's address family by fd (``socket.family`` builds an enum member)."""
        self._pending = PendingSet(PENDING_LIMIT,
                                   lambda conn: self._examine(conn, time.monotonic(), woken=True))
        self._scratch = bytearray(HEAD_LIMIT)
        self._warned_full = False
        peers = settings.proxy_peers
        self._proxy_peer_allowed = (TrustCache(peers) if settings.proxy_protocol
                                    and not peers.everything else None)
        """``--proxy-allow-from``, when it excludes anyone: a dict look-up per peer seen before."""
        self._peers_refused = 0
        self._peer_report_due = 0.0
        self.accepted = 0
        """Connections accepted."""
        self.timed_out = 0
        """Connections routed (or closed) because they sent too little within the peek timeout."""
        self.shed = 0
        """New Engine.IO sessions answered ``503`` while every worker was late or full."""
        self._shed_log = BurstLog(log, logging.WARNING,
                                  "every worker is late or full: new sessions are answered 503, "
                                  "their clients try again later (--overload refuse)")
        self.refused = 0
        """Connections closed for a missing, bad or truncated PROXY header, or from a peer
        not in ``--proxy-allow-from``."""

    @property
    def pending_count(self) -> int:
        """Connections waiting for their first bytes."""
        return len(self._pending)

    @property
    def peeking(self) -> bool:
        """Whether connections are looked at before they are handed off."""
        return self._rules.peeking

    def set_peers(self, ips: frozenset[str]) -> None:
        """Several hosts: the other masters' IPs now (from the directory of hosts), whose
        PROXY v2 header is believed (:attr:`IntakeRules.peers`); also let through
        ``--proxy-allow-from`` with ``--proxy-protocol``."""
        if self._rules.peers is not None and ips != self._rules.peers:
            self._rules = dataclasses.replace(self._rules, peers=ips)

    def attach(self, selector: selectors.BaseSelector) -> None:
        """Wait for pending connections in ``selector``, the master's loop."""
        self._pending.attach(selector)

    def prepare(self, listener: socket.socket) -> None:
        """Set up a listening socket: TCP_DEFER_ACCEPT when connections are peeked at."""
        self._families[listener.fileno()] = listener.family
        if self.peeking and listener.family != socket.AF_UNIX and hasattr(socket, "TCP_DEFER_ACCEPT"):
            listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, DEFER_ACCEPT)

    def close(self) -> None:
        """Close the connections still waiting (the master stops, or a new child forgets them)."""
        self._pending.close_all()

    # ------------------------------------------------------------------- accept

    def accept_from(self, listener: socket.socket) -> bool:
        """Accept and route up to a batch of clients; False when out of file descriptors."""
        peeking = self.peeking
        family = self._families.get(listener.fileno()) or listener.family
        tcp = family != socket.AF_UNIX
        deferred = peeking and tcp
        proxied = not self._rules.proxy_protocol
        proxy_peer_allowed = self._proxy_peer_allowed
        room = PENDING_LIMIT - len(self._pending)
        if deferred and self._fast is not None and room > 0:
            # the C loop's leftovers are all open at once before they are examined: a
            # batch no larger than the pending set's room keeps the master's open
            # connections within PENDING_LIMIT (docs/routing.md)
            done = self._fast.run(listener.fileno(), min(ACCEPT_BATCH, room), self._peek_size)
            if done is not None:
                ok, accepted, leftovers = done
                self.accepted += accepted
                for fd, client in leftovers:  # what the C loop could not decide: as below
                    sock = socket.socket(family, socket.SOCK_STREAM, 0, fileno=fd)
                    now = time.monotonic()
                    conn = Pending(sock, client or _peer_of(sock), now, proxied, tcp)
                    self._examine(conn, now, deferred=True)
                return ok
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
                self._dispatcher.route(fd, client, None)
                continue
            if (proxy_peer_allowed is not None and client is not None
                    and not proxy_peer_allowed(client[0]) and not self._is_peer(client[0])):
                self._refuse_peer(fd, client[0])
                continue
            sock = socket.socket(family, socket.SOCK_STREAM, 0, fileno=fd)
            now = time.monotonic()
            conn = Pending(sock, client, now, proxied, tcp)
            self._examine(conn, now, deferred=deferred)
        return True

    def expire(self, now: float) -> None:
        """Route or close the pending connections whose peek timeout has passed; log how
        many new sessions were turned away since the last line, once its window is over."""
        for conn in self._pending.expired(now, self._rules.peek_timeout):
            self.timed_out += 1
            self._examine(conn, now)
        self._shed_log.flush()
        if self._warned_full and len(self._pending) < PENDING_LIMIT // 2:
            self._warned_full = False

    # ------------------------------------------------------------------ examine

    def _examine(self, conn: Pending, now: float, woken: bool = False, deferred: bool = False) -> None:
        """Peek at ``conn`` and act on what :func:`~cluster.intake.intake_decision.decide` says.

        ``woken``: it waits and has become readable. ``deferred``: just accepted from a
        TCP_DEFER_ACCEPT listener, where a silent connection has already waited.
        """
        crowded = not woken and self._pending.full
        if crowded and not self._warned_full:
            self._warned_full = True
            log.warning("%d connections wait for their first bytes, the most: new ones are "
                        "routed at once on what they have sent%s", PENDING_LIMIT,
                        " (closed without a PROXY header)" if self._rules.proxy_protocol else "")
        try:
            head: bytes | None = conn.sock.recv(self._peek_size, _PEEK)
        except BlockingIOError:
            head = None
        except OSError:
            head = b""
        seen = Seen(conn.client, now - conn.since, conn.proxied, conn.lowat if woken else 0,
                    crowded, conn.tcp)
        decision = self._decide(head, seen, self._rules)
        if head is None and deferred:
            conn.since -= DEFER_ACCEPT
        if isinstance(decision, (Wait, Route)) and decision.proxy is not None:
            if not self._take_proxy_header(conn, decision.proxy):
                self._close(conn)
                return
        if isinstance(decision, Wait):
            self._set_lowat(conn, decision.lowat)
            if conn not in self._pending:
                self._pending.add(conn)
        elif isinstance(decision, Route):
            self._pending.discard(conn)
            if decision.sid is None and self._dispatcher.overloaded:
                request = head[decision.proxy.length:] if head and decision.proxy else head
                # Nothing sent yet (crowded, or past the peek timeout): shed too, not handed
                # to a worker that is behind (in a storm they piled up to its fd limit).
                if not request or opens_session(request):
                    self._turn_away(conn)
                    return
            self._set_lowat(conn, 1)
            self._dispatcher.route(conn.sock.detach(), decision.client, decision.sid)
        elif isinstance(decision, Refuse):
            self._refuse(conn, decision.reason)
        else:
            self._close(conn)

    def _is_peer(self, ip: str) -> bool:
        """Whether ``ip`` is another master's (several hosts only)."""
        peers = self._rules.peers
        return peers is not None and ip in peers

    def _take_proxy_header(self, conn: Pending, header: ProxyHeader) -> bool:
        """Consume ``conn``'s PROXY header and take its client; False if the peer is gone."""
        if not self._consume(conn.sock, header.length):
            return False
        conn.proxied = True
        conn.client = header.client or conn.client
        self._set_lowat(conn, 1)
        return True

    def _refuse_peer(self, fd: int, peer: str) -> None:
        """Close a connection from a peer whose PROXY header is not believed; say so in
        one line at most every :data:`PEER_REFUSAL_REPORT` seconds."""
        os.close(fd)
        self.refused += 1
        self._peers_refused += 1
        now = time.monotonic()
        if now >= self._peer_report_due:
            log.warning("refused %d connection(s) from peers not in --proxy-allow-from "
                        "(the last from %s): their PROXY header is not believed",
                        self._peers_refused, peer)
            self._peers_refused = 0
            self._peer_report_due = now + PEER_REFUSAL_REPORT

    def _turn_away(self, conn: Pending) -> None:
        """Answer a new session, or a connection that has sent nothing yet, ``503`` and
        close (``--overload refuse``: every worker is late or full). What the client sent
        is read first, so that the close is a FIN after the answer, not a reset that could
        discard it."""
        self.shed += 1
        self._shed_log.note()
        sock = conn.sock
        view = memoryview(self._scratch)
        try:
            with contextlib.suppress(BlockingIOError):  # nothing (more) there yet
                for _ in range(4):  # a handshake's request is one head: read what is there
                    if sock.recv_into(view, len(view), socket.MSG_DONTWAIT) < len(view):
                        break
            sock.send(BUSY, socket.MSG_DONTWAIT)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        sock.close()

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


def _peer_of(sock: socket.socket) -> Address | None:
    """The (ip, port) of ``sock``'s peer; None when it is gone."""
    try:
        address = sock.getpeername()
    except OSError:
        return None
    return (address[0], address[1])
