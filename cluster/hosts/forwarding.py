"""One client connection in the forwarder: each request read, routed and relayed.

A keep-alive server loop, as a worker's: the request head is read (at most
:data:`MAX_HEAD` bytes, within the header timeout; idle between requests at most the
keep-alive timeout; :mod:`cluster.hosts.http1` reads it), then routed on its own
(:func:`cluster.hosts.routing.decide`):

- for a session of this host: relayed to the worker that owns it, over a connection the
  client connection keeps for that worker (:meth:`~cluster.hosts.upstream.Upstream.local`:
  a socket pair whose other end the master hands to that worker once, with the client's
  address). A kept-alive balancer connection carries sessions of every host: once here
  it stays here, and each worker, of this host or a peer, gets the requests of its own
  sessions on a connection of its own, so that neither side hands a connection back for
  each request of another session (what made a round-robin balancer cost twice a
  sid-aware one: CPU per ack in docs/benchmarks.md). Not so for an upgrade (the
  websocket is better served by the worker itself), nor when ``--forwarded-allow-ips``
  is set and the client connection's peer is not in it (the worker would believe the
  socket pair's ``X-Forwarded-*`` headers as a local peer's);
- for no session, or one of this host in the cases above: handed back to the master with
  every byte read and not served, and this process lets the connection go;
- a host not in the directory: python-engineio's ``400`` for an unknown session, at once;
- a loop (forwarded once already, or a peer that is ourselves): ``502``;
- else forwarded on the connection to that peer's worker this client connection keeps
  (:class:`~cluster.hosts.upstream.Upstream`: one per owner, host and worker tag), with
  :data:`~cluster.hosts.routing.HOP_HEADER`;
  the body and the response are streamed as they come, the bytes received relayed as
  they are (only the request head gains the hop header), never held whole; a ``101``
  turns both connections into one relayed byte stream until either side closes.

After the first request, a connection's simple requests (head, body and response whole) are
relayed from the sockets' read callbacks (:mod:`cluster.hosts.steady`), which give the rest
back to this coroutine.

A peer that refuses or resets the connection before answering is a dead host: ``400``,
like an unknown one. A peer that gives no response head within the header timeout:
``502``. Each is counted and logged once per burst; a client never sees more than the
status and a fixed body. Writes wait while the other side does not take the bytes.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket
import time
from typing import Callable

from cluster.protocol.bursts import BurstLog
from cluster.protocol.frames import RESUME_LIMIT
from cluster.protocol.trust import Trust, TrustCache

from . import http1, responses, tunnel
from .addresses import Address, format_address
from .counts import Counts, PeerCounts
from .forwarder_config import ForwarderConfig
from .http1 import HeadError, RequestHead, ResponseHead
from .routing import HOP_HEADER, Decision, Route, decide_sid, target_sid
from .sockio import Reader, send_all
from .steady import Steady
from .upstream import MAX_RESPONSE_HEAD, Upstream

log = logging.getLogger("sticky_cluster.hosts")

MAX_HEAD = 16 * 1024
"""Largest request head taken from a client; a larger one is answered ``431``."""

READ_SIZE = 16 * 1024
"""Most bytes read from a client at once (with :data:`MAX_HEAD`, what a hand-back may carry
stays below :data:`~cluster.protocol.frames.RESUME_LIMIT`)."""

CONNECT_TIMEOUT = 5.0
"""Most seconds to connect to a peer (the header timeout when shorter): a host gone
without a reset (its machine down) is answered ``400`` this soon, not a header timeout later."""

PARKED_LIMIT = 1024
"""Most connections to peers kept for client connections handed back
(:meth:`Forwarding.park`)."""

DECISIONS = 4096
"""Most routing decisions kept (:meth:`Forwarding.decide`; all forgotten when full)."""

LINGER = 1.0
"""Seconds to read (and drop) what a refused client still sends, so that the refusal is
not lost to a reset."""


@dataclasses.dataclass
class Forwarding:
    """What every client connection of the forwarder shares.

    :param config: the forwarder's settings.
    :param hosts: returns the directory now.
    :param hand_back: gives a client socket back to the master (socket, address, bytes read).
    """

    config: ForwarderConfig
    hosts: Callable[[], dict[int, Address]]
    hand_back: Callable[[socket.socket, tuple[str, int], bytes], None]
    counts: Counts = dataclasses.field(default_factory=Counts)

    def __post_init__(self) -> None:
        warn = logging.WARNING
        self.unknown = BurstLog(log, warn, "a request for host %s, which is not in the "
                                           "directory of hosts: answered 400 (the client "
                                           "connects again)")
        self.loop = BurstLog(log, warn, "a request for host %s came forwarded already, or "
                                        "its entry names this host: answered 502 (directory "
                                        "entries or --peers disagree)")
        self.dead = BurstLog(log, warn, "host %s at %s cannot be reached (%s): answered 400")
        self.unanswered = BurstLog(log, warn, "host %s at %s gave no answer in %s s: "
                                              "answered 502")
        self.failed = BurstLog(log, logging.ERROR, "a client connection of the forwarder "
                                                   "failed: %s (closed)")
        self.full = BurstLog(log, warn, f"the forwarder serves {self.config.connection_limit} "
                                        "client connections (--worker-connections): one more "
                                        "answered 503")
        self.draining = False
        """Set on DRAIN (:meth:`drain`): idle connections close instead of waiting for a
        next request."""
        self.idle: set[asyncio.Future] = set()
        """The reads of the connections waiting for their next request."""
        self.steady: set[Steady] = set()
        """The connections served from read callbacks now (:mod:`cluster.hosts.steady`)."""
        self.parked: dict[tuple[tuple[str, int], int], tuple[Upstream, float]] = {}
        """Idle connections to owners of client connections handed back: (client address,
        owner) -> (the connection, until when it is kept)."""
        trust = Trust.parse(self.config.forwarded_allow_ips)
        self.trust: TrustCache | None = TrustCache(trust) if trust else None
        """``--forwarded-allow-ips``, when set (:meth:`relays_own`)."""
        self._decisions: dict[tuple[str | None, bool], Decision] = {}
        self._decided_for: dict[int, Address] | None = None
        self.hop_line = HOP_HEADER + b": " + str(self.config.host_id).encode() + b"\r\n"
        """The header line added to every forwarded request."""

    def decide(self, target: bytes, hop: bool) -> Decision:
        """Route a request for ``target`` (:func:`~cluster.hosts.routing.decide`).

        Hand-written for speed: the decisions for the directory now are kept by sid, at
        most :data:`DECISIONS` (the same sids' requests come again and again, each with
        its own ``t`` in the URL, so that decisions kept by target were never found again:
        1.3 µs per request instead of 3.8, least of 5 runs); a new directory (a new dict,
        never changed in place) forgets them."""
        hosts = self.hosts()
        if hosts is not self._decided_for:
            self._decisions.clear()
            self._decided_for = hosts
        sid = target_sid(target)
        key = (sid, hop)
        found = self._decisions.get(key)
        if found is None:
            found = decide_sid(sid, hop, self.config.host_id, self.config.advertise, hosts)
            if len(self._decisions) >= DECISIONS:
                self._decisions.clear()
            self._decisions[key] = found
        return found

    def relays_own(self, sock: socket.socket) -> bool:
        """Whether the requests of this host's sessions that come on the client connection
        ``sock`` may be relayed to its workers: a worker trusts the socket pair's
        ``X-Forwarded-*`` headers as a local peer's, so only when
        ``--forwarded-allow-ips`` is not set or trusts the connection's own peer."""
        if self.trust is None:
            return True
        try:
            peer = sock.getpeername()
        except OSError:
            return False
        return self.trust(peer[0]) if isinstance(peer, tuple) else True

    def park(self, client: tuple[str, int], owner: int, upstream: Upstream) -> None:
        """Keep ``upstream`` (idle, to ``owner``) for the client connection ``client``, now
        handed back to the master, for when it comes back with a request for ``owner``:
        a kept-alive balancer connection carries sessions of every host, and a handshake
        or an upgrade of this host sends it to this host's workers. Kept half the
        keep-alive timeout (the peer closes it after the whole), :data:`PARKED_LIMIT` at
        most."""
        key = (client, owner)
        if key in self.parked or len(self.parked) >= PARKED_LIMIT:
            upstream.close()
            return
        self.parked[key] = (upstream, time.monotonic() + self.config.keepalive_timeout / 2)

    def unpark(self, client: tuple[str, int], owner: int) -> Upstream | None:
        """The connection to ``owner`` kept for ``client``, if any."""
        found = self.parked.pop((client, owner), None)
        return None if found is None else found[0]

    def sweep(self, everything: bool = False) -> None:
        """Close the kept connections whose time is over (``everything``: all of them)."""
        now = time.monotonic()
        for key, (upstream, until) in list(self.parked.items()):
            if everything or until <= now:
                del self.parked[key]
                upstream.close()

    def drain(self) -> None:
        """Close the idle connections now, and each busy one once its request is served."""
        self.draining = True
        for waiting in list(self.idle):
            if not waiting.done():
                waiting.set_result(b"")
        for steady in list(self.steady):
            steady.drain()

    def refuse_full(self, sock: socket.socket, address: tuple[str, int]) -> None:
        """Answer a client connection over the connection limit ``503`` and close it: it
        is told at once (its client connects again), never left hanging."""
        self.full.note()
        answer, body = responses.full()
        try:
            sock.send(answer.encode(body), socket.MSG_DONTWAIT)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        sock.close()

    def flush_logs(self) -> None:
        """Write the counts of the bursts that are over."""
        for burst in (self.unknown, self.loop, self.dead, self.unanswered, self.failed,
                      self.full):
            burst.flush()


class PeerGone(Exception):
    """The peer refused, reset or closed the connection before its response head."""


class ClientRelay:
    """Serves one client connection until it closes, is handed back, or is refused.

    :param forwarding: what the connections share.
    :param sock: the client's socket (its own now: closed at the end unless handed back).
    :param address: the client's address, as the master saw it.
    :param preface: bytes already read from it (a RESUME), served first.
    """

    def __init__(self, forwarding: Forwarding, sock: socket.socket, address: tuple[str, int],
                 preface: bytes) -> None:
        self._fw = forwarding
        self._config = forwarding.config
        self._sock = sock
        self._address = address
        self._loop = asyncio.get_running_loop()
        self.buffer = bytearray(preface)
        """Bytes read from the client and not relayed: the next request's, from its first."""
        self.upstreams: dict[int, Upstream] = {}
        """The kept-alive connections to owners (host and worker tag, as one number)."""
        self._reader = Reader(sock, READ_SIZE)
        self._relays_own = forwarding.relays_own(sock)
        self._steady = Steady(self, forwarding, sock, READ_SIZE, MAX_HEAD)

    async def run(self) -> None:
        """Serve the connection's requests, one after the other."""
        self._sock.setblocking(False)
        if self._sock.family in (socket.AF_INET, socket.AF_INET6):
            try:
                self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        try:
            goes_on = await self.serve_next(True)
            while goes_on:
                after = await self._steady.serve()
                if after is None:
                    return
                goes_on = await after()
        except (OSError, HeadError, PeerGone, asyncio.TimeoutError):
            return  # the client or the peer went away, or broke HTTP mid-way: nothing to say
        except Exception as exc:  # noqa: BLE001 - one connection never ends the forwarder
            log.debug("a client connection failed", exc_info=True)
            self._fw.failed.note(f"{type(exc).__name__}: {exc}")
        finally:
            for upstream in self.upstreams.values():
                upstream.close()
            self._reader.stop()
            self._sock.close()  # a handed-back client lives on in the master's copy

    async def serve_next(self, first: bool) -> bool:
        """Read the next request and act on it; whether the connection goes on.
        ``first``: the connection's first request."""
        request = await self._read_head(first)
        return request is not None and await self._serve(request)

    def stop_reading(self) -> None:
        """Stop watching the client socket (:class:`~cluster.hosts.steady.Steady` reads it)."""
        self._reader.stop()

    async def _receive(self, timeout: float, idle: bool = False) -> bytes:
        """What the client sends next (``b""``: it closed), within ``timeout`` s. ``idle``:
        waiting for a next request, which a drain ends (``b""``), and which a balancer
        sends only once it has another: not read at once (that read finds nothing; it
        was one of about four reads per forwarded request, the reads 8.5 % of the
        forwarder's busy time, py-spy)."""
        return await self._reader.receive(timeout, eager=not idle,
                                          waiting=self._fw.idle if idle else None)

    async def _read_head(self, first: bool) -> RequestHead | None:
        """The next request's head; None when the client closed, timed out (closed here),
        or sent what is not a request (answered)."""
        started = time.monotonic() if self.buffer else None
        looked = 0
        while True:
            end = http1.head_end(self.buffer, max(looked - 3, 0))
            if end > MAX_HEAD or (end < 0 and len(self.buffer) > MAX_HEAD):
                await self._refuse(responses.client_error(431))
                return None
            if end >= 0:
                try:
                    request = http1.parse_request(bytes(self.buffer[:end]))
                except HeadError as exc:
                    await self._refuse(responses.client_error(exc.status))
                    return None
                return request
            looked = len(self.buffer)
            if started is None:
                timeout = self._config.header_timeout if first else self._config.keepalive_timeout
            else:
                timeout = started + self._config.header_timeout - time.monotonic()
            idle = started is None and not first
            if idle and self._fw.draining:
                return None
            try:
                data = await self._receive(timeout, idle)
            except asyncio.TimeoutError:
                return None
            if not data:
                return None
            if started is None:
                started = time.monotonic()
            self.buffer += data

    async def _serve(self, request: RequestHead) -> bool:
        """Act on one request; whether the connection goes on to the next."""
        decision = self.route(request)
        if self.relayed(request, decision):
            return await self._forward(request, decision)
        if decision.route is Route.HAND_BACK:
            if len(self.buffer) > RESUME_LIMIT:
                await self._refuse(responses.client_error(431))
                return False
            self._reader.stop()
            self._fw.hand_back(self._sock, self._address, bytes(self.buffer))
            self._park_upstreams()
            return False
        if decision.route is Route.UNKNOWN_HOST:
            self._fw.counts.refused.unknown_host += 1
            self._fw.unknown.note(decision.host)
            await self._refuse(responses.unknown_session(decision.sid))
            return False
        if decision.route is Route.LOOP:
            self._fw.counts.refused.loop += 1
            self._fw.loop.note(decision.host)
            await self._refuse(responses.bad_gateway())
            return False
        return await self._forward(request, decision)

    def route(self, request: RequestHead) -> Decision:
        """Where ``request`` goes (:func:`~cluster.hosts.routing.decide`)."""
        return self._fw.decide(request.target, request.hop)

    def relayed(self, request: RequestHead, decision: Decision) -> bool:
        """Whether ``request`` is relayed from here (:meth:`_forward`): to a peer, or to
        this host's worker (not an upgrade, and when ``--forwarded-allow-ips`` allows)."""
        if decision.route is Route.FORWARD:
            return True
        return (decision.route is Route.HAND_BACK and decision.owner is not None
                and decision.host == self._config.host_id and self._relays_own
                and not request.upgrade)

    def outgoing_head(self, request: RequestHead, decision: Decision) -> bytes:
        """``request``'s head as it goes to the owner of ``decision``'s sid: as it came to
        this host's worker; to a peer's with the hop header (and a ``Host`` when none)."""
        if decision.host == self._config.host_id:
            return request.head
        extra = self._fw.hop_line
        if not request.has_host:
            assert decision.address is not None
            extra = b"host: " + format_address(decision.address).encode() + b"\r\n" + extra
        return http1.with_headers(request.head, extra)

    async def _forward(self, request: RequestHead, decision: Decision) -> bool:
        """Relay one request to the owner of its sid, a peer's worker or one of this
        host's, and its response back; whether the client connection goes on."""
        host, owner = decision.host, decision.owner
        assert host is not None and owner is not None
        local = host == self._config.host_id
        counts = self._fw.counts.own if local else self._fw.counts.peer(host)
        counts.requests += 1
        address = self._config.advertise if local else decision.address
        assert address is not None
        started = time.monotonic()
        body = http1.BodyEnd(request.framing)
        head_size = len(request.head)
        sent = head_size + body.feed(self.buffer, head_size)
        data = self.outgoing_head(request, decision) + self.buffer[head_size:sent]
        try:
            upstream, delivered = await self._upstream(decision, data, counts)
            upstream.idle = False
            if delivered < len(data):
                await upstream.write(data[delivered:])
        except (OSError, asyncio.TimeoutError) as exc:
            if local:
                return False  # the master is gone: the client connection closes
            return await self._peer_gone(decision, format_address(address), exc)
        counts.forward_seconds += time.monotonic() - started
        counts.forwards += 1
        del self.buffer[:sent]
        while not body.done:
            await self._relay_piece(await self._client_piece(), body, upstream.write,
                                    self.buffer)
        return await self.respond(request, decision, upstream, counts,
                                  self._config.header_timeout)

    async def send_rest(self, rest: bytes, started: float, request: RequestHead,
                        decision: Decision, upstream: Upstream, counts: PeerCounts) -> bool:
        """Write ``rest``, the end of a whole request the owner's connection did not take
        at once (written since ``started``), then relay the response; whether the client
        connection goes on."""
        try:
            await upstream.write(rest)
        except OSError as exc:
            if decision.host == self._config.host_id:
                return False
            assert decision.address is not None
            return await self._peer_gone(decision, format_address(decision.address), exc)
        counts.forward_seconds += time.monotonic() - started
        counts.forwards += 1
        return await self.respond(request, decision, upstream, counts,
                                  self._config.header_timeout)

    async def respond(self, request: RequestHead, decision: Decision, upstream: Upstream,
                      counts: PeerCounts, timeout: float) -> bool:
        """Relay the response to ``request``, sent whole on ``upstream`` (its head due
        within ``timeout`` s), to the client; whether the client connection goes on."""
        host, owner = decision.host, decision.owner
        assert host is not None and owner is not None
        local = host == self._config.host_id
        address = self._config.advertise if local else decision.address
        assert address is not None
        try:
            response, framing = await self._response_head(upstream, request.method, timeout)
        except asyncio.TimeoutError:
            counts.errors += 1
            self._fw.counts.refused.unanswered += 1
            self._fw.unanswered.note(host, format_address(address),
                                     f"{self._config.header_timeout:g}")
            self.drop(owner)
            await self._refuse(responses.bad_gateway())
            return False
        except (PeerGone, OSError) as exc:
            if local:  # the worker ended with the request: as for a client of its own
                return False
            return await self._peer_gone(decision, format_address(address), exc)
        if response.status == 101:
            await self._client_write(upstream.pending[:len(response.head)])
            del upstream.pending[:len(response.head)]
            counts.upgrades += 1
            await self._tunnel(owner, upstream, counts)
            return False
        return await self._relay_response(request, response, framing, owner, upstream)

    async def finish_response(self, rest: bytes, request: RequestHead, response: ResponseHead,
                              owner: int, upstream: Upstream) -> bool:
        """Write ``rest``, the end of a whole response the client did not take at once;
        whether the client connection goes on."""
        await self._client_write(rest)
        return self.after_response(request, response, http1.CHUNKED, owner, upstream)

    async def _relay_response(self, request: RequestHead, response: ResponseHead,
                              framing: int, owner: int, upstream: Upstream) -> bool:
        """Relay the response from its head to its body's end; whether the client
        connection goes on."""
        body = http1.BodyEnd(framing)
        head_size = len(response.head)
        relayed = head_size + body.feed(upstream.pending, head_size)
        await self._client_write(upstream.pending[:relayed])
        del upstream.pending[:relayed]
        while not body.done:
            data = await upstream.read(self._config.header_timeout)
            if not data:
                if framing == http1.UNTIL_CLOSE:
                    break
                raise PeerGone("the connection closed in a response")
            await self._relay_piece(data, body, self._client_write, upstream.pending)
        return self.after_response(request, response, framing, owner, upstream)

    def after_response(self, request: RequestHead, response: ResponseHead, framing: int,
                       owner: int, upstream: Upstream) -> bool:
        """Once a response is relayed whole: keep ``upstream`` for the next request, or
        close it; whether the client connection goes on."""
        again = (request.keep_alive and response.keep_alive and framing != http1.UNTIL_CLOSE)
        if again and not upstream.pending:
            upstream.idle = True
        else:
            self.drop(owner)
        return again

    @staticmethod
    async def _relay_piece(data: bytes, body: http1.BodyEnd,
                           write: Callable[[bytes], object], rest: bytearray) -> None:
        """Relay what of ``data`` belongs to ``body``; keep the rest in ``rest``."""
        taken = body.feed(data)
        if taken:
            await write(data if taken == len(data) else data[:taken])  # type: ignore[misc]
        if taken < len(data):
            rest += data[taken:]

    async def _client_piece(self) -> bytes:
        """The client's next bytes of a request body (each read within the header timeout;
        a body cut short ends the connection)."""
        data = await self._receive(self._config.header_timeout)
        if not data:
            raise ConnectionResetError("the client closed the connection in a request body")
        return data

    async def _upstream(self, decision: Decision, data: bytes,
                        counts: PeerCounts) -> tuple[Upstream, int]:
        """This connection's kept-alive connection to the owner of ``decision``'s sid,
        opened when it has none that can take a request; and how many bytes of ``data``
        (the request's, from its first) went already: a new connection to this host's
        worker is handed over with them (at most :data:`RESUME_LIMIT`)."""
        owner = decision.owner
        assert owner is not None
        upstream = self.upstreams.get(owner)
        client = self._client_address()
        if upstream is None and client is not None:
            upstream = self._fw.unpark(client, owner)
            if upstream is not None:
                self.upstreams[owner] = upstream
        if upstream is not None and upstream.usable():
            return upstream, 0
        self.drop(owner)
        if decision.host == self._config.host_id:
            first = data[:RESUME_LIMIT]
            upstream = Upstream.local(
                lambda theirs, read: self._fw.hand_back(theirs, self._address, read),
                first, counts)
            self.upstreams[owner] = upstream
            return upstream, len(first)
        assert decision.address is not None
        upstream = await asyncio.wait_for(
            Upstream.open(decision.address, self._config.advertise[0], client, counts),
            min(CONNECT_TIMEOUT, self._config.header_timeout))
        self.upstreams[owner] = upstream
        return upstream, 0

    def _park_upstreams(self) -> None:
        """Keep this connection's idle connections to peers for when it comes back."""
        client = self._client_address()
        if client is None:
            return
        for owner, upstream in list(self.upstreams.items()):
            if upstream.usable():
                del self.upstreams[owner]
                self._fw.park(client, owner, upstream)

    def _client_address(self) -> tuple[str, int] | None:
        return self._address if self._address[0] else None

    def drop(self, owner: int) -> None:
        """Close the connection to ``owner``, if any."""
        upstream = self.upstreams.pop(owner, None)
        if upstream is not None:
            upstream.close()

    async def _peer_gone(self, decision: Decision, shown: str, exc: BaseException) -> bool:
        """Answer as for an unknown session: the host of ``decision`` cannot be reached
        (dead, or its machine gone), so the client reconnects and gets a session here."""
        host = decision.host
        assert host is not None
        self._fw.counts.peer(host).errors += 1
        reason = "no connection in time" if isinstance(exc, asyncio.TimeoutError) else (
            " ".join(str(exc).split()) or type(exc).__name__)
        self._fw.dead.note(host, shown, reason)
        assert decision.owner is not None
        self.drop(decision.owner)
        await self._refuse(responses.unknown_session(decision.sid))
        return False

    async def _response_head(self, upstream: Upstream, method: bytes,
                             timeout: float) -> tuple[ResponseHead, int]:
        """The peer's final response head, or its ``101`` (its bytes still in
        ``upstream.pending``), and its body's framing (for a ``method`` request), all within
        ``timeout`` s; other ``1xx`` are relayed. :class:`PeerGone` when the peer closes or
        breaks the response."""
        deadline = time.monotonic() + timeout
        pending = upstream.pending
        while True:
            end = http1.head_end(pending)
            if end < 0 and len(pending) > MAX_RESPONSE_HEAD or end > MAX_RESPONSE_HEAD:
                raise PeerGone("a response head over 64 KiB")
            if end < 0:
                data = await upstream.read(deadline - time.monotonic())
                if not data:
                    raise PeerGone("the connection closed")
                pending += data
                continue
            try:
                response = http1.parse_response(bytes(pending[:end]))
                if response.status >= 200 or response.status == 101:
                    return response, response.response_framing(method)
            except HeadError as exc:
                raise PeerGone(str(exc)) from None
            await self._client_write(pending[:end])
            del pending[:end]

    async def _client_write(self, data: bytes | bytearray) -> None:
        await send_all(self._loop, self._sock, data)

    async def _tunnel(self, owner: int, upstream: Upstream, counts: PeerCounts) -> None:
        """Relay the upgraded connection's bytes both ways until either side closes (the
        connection to the peer is not used again)."""
        del self.upstreams[owner]
        self._reader.stop()
        try:
            await tunnel.relay(self._sock, upstream.release(), bytes(self.buffer),
                               bytes(upstream.pending), counts.count_out, counts.count_in)
        finally:
            upstream.close()

    async def _refuse(self, answer: tuple[responses.Answer, bytes]) -> None:
        """Answer the request (the connection closes after it) and close it gently: what
        the client still sends is read and dropped for a moment, so that the answer is
        not lost to a reset."""
        head, body = answer
        try:
            await asyncio.wait_for(self._loop.sock_sendall(self._sock, head.encode(body)),
                                   LINGER)
            self._sock.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + LINGER
            while time.monotonic() < deadline:
                if not await self._receive(deadline - time.monotonic()):
                    return
        except (OSError, asyncio.TimeoutError):
            return
