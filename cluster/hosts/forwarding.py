"""One client connection in the forwarder: each request read, routed and relayed.

A keep-alive server loop, as a worker's: the request head is read with h11 (at most
:data:`MAX_HEAD` bytes, within the header timeout; idle between requests at most the
keep-alive timeout), then routed on its own (:func:`cluster.hosts.routing.decide`):

- not for another host: handed back to the master with every byte read and not served,
  and this process lets the connection go;
- a host not in the directory: python-engineio's ``400`` for an unknown session, at once;
- a loop (forwarded once already, or a peer that is ourselves): ``502``;
- else forwarded on the connection to that peer this client connection keeps
  (:class:`~cluster.hosts.upstream.Upstream`), with :data:`~cluster.hosts.routing.HOP_HEADER`;
  the body and the response are streamed, never held whole; a ``101`` turns both
  connections into one relayed byte stream until either side closes.

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
from typing import Awaitable, Callable

import h11

from cluster.protocol.bursts import BurstLog
from cluster.protocol.frames import RESUME_LIMIT

from . import responses, tunnel
from .addresses import Address, format_address
from .counts import Counts, PeerCounts
from .forwarder_config import ForwarderConfig
from .routing import HOP_HEADER, Decision, Route, decide
from .upstream import Upstream

log = logging.getLogger("sticky_cluster.hosts")

MAX_HEAD = 16 * 1024
"""Largest request head taken from a client; a larger one is answered ``431``."""

READ_SIZE = 16 * 1024
"""Most bytes read from a client at once (with :data:`MAX_HEAD`, what a hand-back may carry
stays below :data:`~cluster.protocol.frames.RESUME_LIMIT`)."""

CONNECT_TIMEOUT = 5.0
"""Most seconds to connect to a peer (the header timeout when shorter): a host gone
without a reset (its machine down) is answered ``400`` this soon, not a header timeout later."""

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
        self.draining = asyncio.Event()
        """Set on DRAIN: idle connections close instead of waiting for a next request."""

    def flush_logs(self) -> None:
        """Write the counts of the bursts that are over."""
        for burst in (self.unknown, self.loop, self.dead, self.unanswered, self.failed):
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
        self._conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        self._raw = bytearray(preface)
        if preface:
            self._conn.receive_data(preface)
        self._upstreams: dict[int, Upstream] = {}

    async def run(self) -> None:
        """Serve the connection's requests, one after the other."""
        self._sock.setblocking(False)
        if self._sock.family in (socket.AF_INET, socket.AF_INET6):
            try:
                self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        try:
            first = True
            while True:
                request = await self._read_head(first)
                if request is None or not await self._serve(request):
                    return
                first = False
                self._conn.start_next_cycle()
                self._raw = bytearray(self._conn.trailing_data[0])
        except (OSError, h11.ProtocolError, asyncio.TimeoutError):
            return  # the client or the peer went away, or broke HTTP mid-way: nothing to say
        except Exception as exc:  # noqa: BLE001 - one connection never ends the forwarder
            log.debug("a client connection failed", exc_info=True)
            self._fw.failed.note(f"{type(exc).__name__}: {exc}")
        finally:
            for upstream in self._upstreams.values():
                upstream.close()
            self._sock.close()  # a handed-back client lives on in the master's copy

    async def _receive(self, timeout: float) -> bytes:
        return await asyncio.wait_for(self._loop.sock_recv(self._sock, READ_SIZE), timeout)

    async def _receive_unless_draining(self, timeout: float) -> bytes:
        """What an idle connection sends next; ``b""`` (close it) once the forwarder drains."""
        if self._fw.draining.is_set():
            return b""
        receiving = asyncio.ensure_future(self._receive(timeout))
        draining = asyncio.ensure_future(self._fw.draining.wait())
        try:
            await asyncio.wait((receiving, draining), return_when=asyncio.FIRST_COMPLETED)
        finally:
            draining.cancel()
        if not receiving.done():
            receiving.cancel()
            await asyncio.gather(receiving, return_exceptions=True)
            return b""
        return receiving.result()

    async def _read_head(self, first: bool) -> h11.Request | None:
        """The next request's head; None when the client closed, timed out (closed here),
        or sent what is not a request (answered)."""
        started = time.monotonic() if self._raw else None
        while True:
            try:
                event = self._conn.next_event()
            except h11.RemoteProtocolError as exc:
                await self._refuse(responses.client_error(exc.error_status_hint))
                return None
            if isinstance(event, h11.Request):
                return event
            if event is not h11.NEED_DATA:
                return None  # closed, or paused after a connection that cannot go on
            if started is None:
                timeout = self._config.header_timeout if first else self._config.keepalive_timeout
            else:
                timeout = started + self._config.header_timeout - time.monotonic()
            try:
                if started is None and not first:
                    data = await self._receive_unless_draining(timeout)
                else:
                    data = await self._receive(max(timeout, 0.0))
            except asyncio.TimeoutError:
                return None
            if not data:
                return None
            if started is None:
                started = time.monotonic()
            self._raw += data
            self._conn.receive_data(data)

    async def _serve(self, request: h11.Request) -> bool:
        """Act on one request; whether the connection goes on to the next."""
        hop = any(name == HOP_HEADER for name, _value in request.headers)
        decision = decide(request.target, hop, self._config.host_id, self._config.advertise,
                          self._fw.hosts())
        if decision.route is Route.HAND_BACK:
            if len(self._raw) > RESUME_LIMIT:
                await self._refuse(responses.client_error(431))
                return False
            self._fw.hand_back(self._sock, self._address, bytes(self._raw))
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

    async def _forward(self, request: h11.Request, decision: Decision) -> bool:
        host, address = decision.host, decision.address
        assert host is not None and address is not None
        counts = self._fw.counts.peer(host)
        counts.requests += 1
        shown = format_address(address)
        started = time.monotonic()
        try:
            upstream = await self._upstream(host, address)
            headers = [(name, value) for name, value in request.headers if name != HOP_HEADER]
            if not any(name == b"host" for name, _value in headers):
                headers.append((b"host", shown.encode()))
            headers.append((HOP_HEADER, str(self._config.host_id).encode()))
            await upstream.send(h11.Request(method=request.method, target=request.target,
                                            headers=headers))
        except (OSError, asyncio.TimeoutError) as exc:
            return await self._peer_gone(decision, shown, exc)
        counts.forward_seconds += time.monotonic() - started
        counts.forwards += 1
        await self._relay_body(self._client_event, upstream.send)
        try:
            response = await asyncio.wait_for(self._response_head(upstream),
                                              self._config.header_timeout)
        except asyncio.TimeoutError:
            counts.errors += 1
            self._fw.counts.refused.unanswered += 1
            self._fw.unanswered.note(host, shown, f"{self._config.header_timeout:g}")
            self._drop(host)
            await self._refuse(responses.bad_gateway())
            return False
        except (PeerGone, OSError, h11.RemoteProtocolError) as exc:
            return await self._peer_gone(decision, shown, exc)
        if response.status_code == 101:
            await self._client_send(response)
            counts.upgrades += 1
            await self._tunnel(host, upstream, counts)
            return False
        await self._client_send(response)
        await self._relay_body(lambda: self._peer_event(upstream), self._client_send)
        if upstream.conn.our_state is h11.DONE and upstream.conn.their_state is h11.DONE:
            upstream.conn.start_next_cycle()
        else:
            self._drop(host)
        return self._conn.our_state is h11.DONE and self._conn.their_state is h11.DONE

    async def _upstream(self, host: int, address: Address) -> Upstream:
        """This connection's kept-alive connection to ``host``, opened when it has none
        that can take a request."""
        upstream = self._upstreams.get(host)
        if upstream is not None and upstream.usable():
            return upstream
        self._drop(host)
        upstream = await asyncio.wait_for(
            Upstream.open(address, self._config.advertise[0], self._client_address(),
                          self._fw.counts.peer(host)),
            min(CONNECT_TIMEOUT, self._config.header_timeout))
        self._upstreams[host] = upstream
        return upstream

    def _client_address(self) -> tuple[str, int] | None:
        return self._address if self._address[0] else None

    def _drop(self, host: int) -> None:
        upstream = self._upstreams.pop(host, None)
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
        self._drop(host)
        await self._refuse(responses.unknown_session(decision.sid))
        return False

    async def _client_event(self) -> h11.Event:
        """The client's next h11 event, reading as needed (each read within the header
        timeout; a body cut short raises h11's error)."""
        while (event := self._conn.next_event()) is h11.NEED_DATA:
            self._conn.receive_data(await self._receive(self._config.header_timeout))
        return event

    async def _peer_event(self, upstream: Upstream) -> h11.Event:
        """The peer's next h11 event, within the header timeout."""
        return await asyncio.wait_for(upstream.next_event(), self._config.header_timeout)

    @staticmethod
    async def _relay_body(receive: Callable[[], Awaitable[h11.Event]],
                          send: Callable[[h11.Event], Awaitable[None]]) -> None:
        """Relay one message's body, piece by piece as it comes, then its end."""
        while True:
            event = await receive()
            if isinstance(event, h11.Data):
                await send(h11.Data(data=event.data))
            elif isinstance(event, h11.EndOfMessage):
                await send(h11.EndOfMessage(headers=event.headers))
                return
            else:
                raise h11.RemoteProtocolError(f"a message ended by {type(event).__name__}")

    async def _response_head(self, upstream: Upstream) -> h11.Response | h11.InformationalResponse:
        """The peer's final response head, or its ``101``; other ``1xx`` are relayed."""
        while True:
            try:
                event = await upstream.next_event()
            except h11.RemoteProtocolError as exc:
                raise PeerGone(str(exc) or "the connection closed") from None
            if isinstance(event, h11.Response):
                return event
            if isinstance(event, h11.InformationalResponse):
                if event.status_code == 101:
                    return event
                await self._client_send(event)
                continue
            raise PeerGone("the connection closed")

    async def _client_send(self, event: h11.Event) -> None:
        data = self._conn.send(event)
        if data:
            await self._loop.sock_sendall(self._sock, data)

    async def _tunnel(self, host: int, upstream: Upstream, counts: PeerCounts) -> None:
        """Relay the upgraded connection's bytes both ways until either side closes (the
        connection to the peer is not used again)."""
        del self._upstreams[host]
        try:
            await tunnel.relay(self._sock, upstream.sock, self._conn.trailing_data[0],
                               upstream.conn.trailing_data[0], counts.count_out, counts.count_in)
        finally:
            upstream.close()

    async def _refuse(self, answer: tuple[h11.Response, bytes]) -> None:
        """Answer the request (the connection closes after it) and close it gently: what
        the client still sends is read and dropped for a moment, so that the answer is
        not lost to a reset. A connection whose response has begun is only closed."""
        response, body = answer
        try:
            if self._conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                data = (self._conn.send(response) + self._conn.send(h11.Data(data=body))
                        + self._conn.send(h11.EndOfMessage()))
                await asyncio.wait_for(self._loop.sock_sendall(self._sock, data), LINGER)
            self._sock.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + LINGER
            while time.monotonic() < deadline:
                if not await self._receive(deadline - time.monotonic()):
                    return
        except (OSError, asyncio.TimeoutError, h11.ProtocolError):
            return
