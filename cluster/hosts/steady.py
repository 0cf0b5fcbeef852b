"""The steady state of a kept client connection in the forwarder, on callbacks.

Once a client connection has had its first request served
(:class:`~cluster.hosts.forwarding.ClientRelay`), its next ones are mostly alike: a
polling request whose head and body come whole, for an owner the connection keeps a
connection to, answered by a response that comes whole. :class:`Steady` relays those
from the event loop's read callbacks on the two sockets: the request is written to the
owner's connection in the client socket's callback, the response to the client in the
owner's, with no task, future or timer per read, and one timer per client connection
(re-armed only when a deadline comes sooner than it, or when it fires early). Hand-written
for speed: with it (and the response heads' readings kept, :func:`cluster.hosts.http1.parse_response`)
the forwarder's CPU per relayed polling request went from 166–171 µs (a coroutine per
connection, a future and a timer per read) to 110–116 µs (load 3–4). Measured at load
6.5–7.2, a request head's reading kept by its header lines
(:func:`cluster.hosts.http1.parse_request`) and the routing decisions kept per sid
(:meth:`cluster.hosts.forwarding.Forwarding.decide`) took it from 135 to 116 µs (medians of 9
alternating runs of 8,000 polling requests through one forwarder, half to a peer's worker,
half to this host's, each with its own ``t`` in the URL as the official clients send it).

Anything else goes back to the connection's coroutine at a point where it takes over as
if it had done the rest itself (:meth:`Steady.serve` returns what it runs next): a
request head to read (a new owner, an upgrade, a body not whole, a head the callbacks
do not take, an answer of the forwarder's own), a response to read (a ``1xx``, a body
not whole or over :data:`WHOLE_LIMIT`, chunked or until close, a peer that closes or
breaks it, no head in time), or the rest of a response to write (the client did not
take it at once). The coroutine answers those as it always did.
"""
from __future__ import annotations

import asyncio
import functools
import socket
import time
from typing import Awaitable, Callable, Protocol

from . import http1
from .counts import Counts, PeerCounts
from .forwarder_config import ForwarderConfig
from .http1 import HeadError, RequestHead, ResponseHead
from .routing import Decision
from .upstream import MAX_RESPONSE_HEAD, Upstream


class Relay(Protocol):
    """What :class:`Steady` asks of its connection's coroutine side
    (:class:`cluster.hosts.forwarding.ClientRelay`, which owns it): described here, not
    imported, so that the two modules do not import each other."""

    buffer: bytearray
    upstreams: dict[int, Upstream]

    def stop_reading(self) -> None: ...
    def route(self, request: RequestHead) -> Decision: ...
    def relayed(self, request: RequestHead, decision: Decision) -> bool: ...
    def outgoing_head(self, request: RequestHead, decision: Decision) -> bytes: ...
    def after_response(self, request: RequestHead, response: ResponseHead, framing: int,
                       owner: int, upstream: Upstream) -> bool: ...
    async def serve_next(self, first: bool) -> bool: ...
    async def send_rest(self, rest: bytes, started: float, request: RequestHead,
                        decision: Decision, upstream: Upstream, counts: PeerCounts) -> bool: ...
    async def respond(self, request: RequestHead, decision: Decision, upstream: Upstream,
                      counts: PeerCounts, timeout: float) -> bool: ...
    async def finish_response(self, rest: bytes, request: RequestHead, response: ResponseHead,
                              owner: int, upstream: Upstream) -> bool: ...


class Shared(Protocol):
    """What :class:`Steady` asks of what every connection of the forwarder shares
    (:class:`cluster.hosts.forwarding.Forwarding`)."""

    config: ForwarderConfig
    counts: Counts
    draining: bool
    steady: set["Steady"]

Next = Callable[[], Awaitable[bool]]
"""What the connection's coroutine runs next; it returns whether the connection goes on."""

WHOLE_LIMIT = 64 * 1024
"""Largest response (head and body) the callbacks wait for whole; a larger one is
streamed by the coroutine (never held whole)."""

_IDLE, _HEAD, _RESPONSE = range(3)
"""What the connection waits for: a next request, the rest of its head, a response."""


class Steady:
    """Serves a client connection's requests from read callbacks while they are simple.

    :param relay: the client connection's relay (its buffer, its connections to owners,
                  its routing, and the coroutine steps it falls back to).
    :param forwarding: what the client connections share.
    :param sock: the client's socket (non-blocking).
    :param read_size: most bytes read from the client at once.
    :param max_head: largest request head taken (a larger one goes to the coroutine,
                     which answers ``431``).
    """

    def __init__(self, relay: Relay, forwarding: Shared, sock: socket.socket,
                 read_size: int, max_head: int) -> None:
        self._relay = relay
        self._fw = forwarding
        self._config = forwarding.config
        self._sock = sock
        self._fd = sock.fileno()
        self._loop = asyncio.get_running_loop()
        self._read_size = read_size
        self._max_head = max_head
        self._done: asyncio.Future | None = None
        self._state = _IDLE
        self._paused = False
        """The client socket is not watched while a response is awaited (a pipelined
        request stays in the socket until then)."""
        self._watched: dict[int, Upstream] = {}
        """The connections to owners whose sockets are watched, by file descriptor."""
        self._request: RequestHead | None = None
        self._decision: Decision | None = None
        self._owner = 0
        self._upstream: Upstream | None = None
        self._counts: PeerCounts | None = None
        self._deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._armed = 0.0

    async def serve(self) -> Next | None:
        """Serve requests until one needs the coroutine: what it runs next (None: the
        connection ends)."""
        done = self._done = self._loop.create_future()
        relay = self._relay
        relay.stop_reading()
        self._fw.steady.add(self)
        self._loop.add_reader(self._fd, self._client_readable)
        self._paused = False
        try:
            self._next_request()
            return await done
        finally:
            self._fw.steady.discard(self)
            self._stop()

    def drain(self) -> None:
        """End the connection now when it waits for a next request (else after its
        response)."""
        if self._state == _IDLE and not self._relay.buffer:
            self._end(None)

    # -- the callbacks -------------------------------------------------------------------

    def _client_readable(self) -> None:
        if self._state == _RESPONSE:
            self._loop.remove_reader(self._fd)
            self._paused = True
            return
        try:
            data = self._sock.recv(self._read_size)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._end(None)
            return
        if not data:
            self._end(None)
            return
        buffer = self._relay.buffer
        if not buffer:
            self._state = _HEAD
            self._wait(self._config.header_timeout)
        buffer += data
        try:
            self._try_request()
        except Exception as exc:  # noqa: BLE001 - the coroutine reports it
            self._fail(exc)

    def _upstream_readable(self, fd: int) -> None:
        upstream = self._watched[fd]
        if upstream is not self._upstream:  # sent unasked, or closed: not used again
            self._unwatch(fd)
            return
        try:
            data = upstream.sock.recv(WHOLE_LIMIT)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._respond_in_coroutine()  # it reads the error again and answers it
            return
        if not data:
            self._respond_in_coroutine()
            return
        assert self._counts is not None
        self._counts.bytes_in += len(data)
        upstream.pending += data
        try:
            self._try_response()
        except Exception as exc:  # noqa: BLE001 - the coroutine reports it
            self._fail(exc)

    def _expired(self) -> None:
        self._timer = None
        if self._loop.time() < self._deadline:
            self._arm(self._deadline)
        elif self._state == _RESPONSE:
            self._respond_in_coroutine()  # its wait ends at once: it answers 502
        else:
            self._end(None)  # no request (head) in time: closed, as the coroutine does

    # -- the steps -----------------------------------------------------------------------

    def _next_request(self) -> None:
        """Wait for the next request, or serve the one already read."""
        self._request = self._decision = self._upstream = self._counts = None
        if self._relay.buffer:
            self._state = _HEAD
            self._wait(self._config.header_timeout)
            self._try_request()
        elif self._fw.draining:
            self._end(None)
        else:
            self._state = _IDLE
            self._wait(self._config.keepalive_timeout)

    def _try_request(self) -> None:
        relay = self._relay
        buffer = relay.buffer
        end = http1.head_end(buffer)
        if end < 0:
            if len(buffer) > self._max_head:
                self._read_in_coroutine()
            return
        if end > self._max_head:
            self._read_in_coroutine()
            return
        try:
            request = http1.parse_request(bytes(buffer[:end]))
        except HeadError:
            self._read_in_coroutine()
            return
        framing = request.framing
        whole = end + framing
        if framing < 0 or len(buffer) < whole or request.upgrade:
            self._read_in_coroutine()
            return
        decision = relay.route(request)
        owner = decision.owner
        upstream = relay.upstreams.get(owner) if owner is not None else None
        if upstream is None or not relay.relayed(request, decision) or not upstream.usable():
            self._read_in_coroutine()
            return
        data = relay.outgoing_head(request, decision) + buffer[end:whole]
        started = time.monotonic()
        try:
            sent = upstream.sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:  # closed meanwhile: the coroutine opens another connection
            self._read_in_coroutine()
            return
        assert decision.host is not None and owner is not None
        counts = (self._fw.counts.own if decision.host == self._config.host_id
                  else self._fw.counts.peer(decision.host))
        counts.requests += 1
        counts.bytes_out += sent
        del buffer[:whole]
        upstream.idle = False
        if sent < len(data):  # the coroutine writes the rest, then reads the response
            self._end(functools.partial(relay.send_rest, data[sent:], started, request,
                                        decision, upstream, counts))
            return
        counts.forward_seconds += time.monotonic() - started
        counts.forwards += 1
        self._request, self._owner, self._upstream, self._counts = (request, owner, upstream,
                                                                    counts)
        self._decision = decision
        self._state = _RESPONSE
        fd = upstream.sock.fileno()
        if fd not in self._watched:
            upstream.unwatch()
            self._watched[fd] = upstream
            self._loop.add_reader(fd, self._upstream_readable, fd)
        self._wait(self._config.header_timeout)

    def _try_response(self) -> None:
        upstream, request = self._upstream, self._request
        assert upstream is not None and request is not None
        pending = upstream.pending
        end = http1.head_end(pending)
        if end < 0:
            if len(pending) > MAX_RESPONSE_HEAD:
                self._respond_in_coroutine()
            return
        try:
            response = http1.parse_response(bytes(pending[:end]))
            framing = response.response_framing(request.method)
        except HeadError:
            self._respond_in_coroutine()
            return
        whole = end + framing
        if response.status < 200 or framing < 0 or whole > WHOLE_LIMIT:
            self._respond_in_coroutine()
            return
        if len(pending) < whole:
            self._wait(self._config.header_timeout)  # each read of a body within it
            return
        data = pending[:whole]
        del pending[:whole]
        try:
            sent = self._sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._end(None)
            return
        relay = self._relay
        if sent < len(data):
            self._end(functools.partial(relay.finish_response, bytes(data[sent:]), request,
                                        response, self._owner, upstream))
            return
        if pending or not (request.keep_alive and response.keep_alive):
            self._unwatch(upstream.sock.fileno())  # after_response closes it
        if not relay.after_response(request, response, framing, self._owner, upstream):
            self._end(None)
            return
        if self._paused:
            self._loop.add_reader(self._fd, self._client_readable)
            self._paused = False
        self._next_request()

    # -- the ends ------------------------------------------------------------------------

    def _read_in_coroutine(self) -> None:
        self._end(functools.partial(self._relay.serve_next, False))

    def _respond_in_coroutine(self) -> None:
        assert self._request is not None and self._upstream is not None
        assert self._counts is not None and self._decision is not None
        self._end(functools.partial(self._relay.respond, self._request, self._decision,
                                    self._upstream, self._counts,
                                    self._deadline - self._loop.time()))

    def _fail(self, exc: Exception) -> None:
        done = self._done
        if done is not None and not done.done():
            done.set_exception(exc)
        self._stop()

    def _end(self, after: Next | None) -> None:
        done = self._done
        if done is not None and not done.done():
            done.set_result(after)
        self._stop()

    def _stop(self) -> None:
        """Stop watching the sockets and the clock (the coroutine takes over)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._paused:
            self._loop.remove_reader(self._fd)
            self._paused = True
        for fd in list(self._watched):
            self._unwatch(fd)

    def _unwatch(self, fd: int) -> None:
        del self._watched[fd]
        self._loop.remove_reader(fd)

    # -- the clock -----------------------------------------------------------------------

    def _wait(self, timeout: float) -> None:
        """Set the deadline of what is awaited now to ``timeout`` s from now."""
        deadline = self._deadline = self._loop.time() + timeout
        if self._timer is None or deadline < self._armed:
            self._arm(deadline)

    def _arm(self, deadline: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_at(deadline, self._expired)
        self._armed = deadline
