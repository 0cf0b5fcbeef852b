"""The worker's limits on every connection of an asyncio server (uvicorn's or aiohttp's).

The asyncio twin of :mod:`workers.eventlet.http` and :mod:`workers.eventlet.websocket`:
the same :class:`~workers.limits.HttpLimits`, applied where the servers have no setting
of their own. uvicorn and aiohttp get what they can do themselves from the options
(:mod:`workers.asyncio.asgi_server`, :mod:`workers.asyncio.aiohttp_server`: keep-alive timeout, line
sizes, the websocket message size, which their permessage-deflate decoders also bound);
:class:`ConnectionGuard`, between the transport and the server's protocol, follows the
requests (:class:`~workers.asyncio.request_bounds.RequestBounds`) and does the rest:

- the request line and headers get one deadline, ``header_timeout``, from the hand-off
  (or from the first byte of a later keep-alive request); then the connection is closed
  without an answer. A body that stops coming for ``header_timeout`` is cut too;
- a head over :data:`~workers.asyncio.request_bounds.HEAD_LIMIT` is answered ``431``;
- an Engine.IO POST whose declared body is over the limit is answered ``413`` (``411``
  without a length, :func:`~workers.limits.body_refusal`) before the server sees its
  head: nothing reads the body; what the client still sends is dropped for
  :data:`~workers.limits.LINGER` seconds (:data:`~workers.limits.LINGER_LIMIT` bytes at
  most) so that it reads the answer, then the connection closes;
- a request that asks for an upgrade is not read past until the server answers it; a
  ``101`` makes the connection a websocket, whose bytes are charged to a
  :class:`~workers.limits.ReceiveBudget` frame by frame (each frame
  :data:`~workers.limits.FRAME_COST` more, :class:`~workers.asyncio.websocket_frames.FrameCounter`):
  past the budget the guard holds the frames already read, stops reading the socket
  for a while, and TCP slows the sender down. Websockets are never timed here:
  Engine.IO pings them.

The server's protocol sees a :class:`GuardedTransport`: its own pauses and the guard's
add up, and a protocol it hands the connection to (uvicorn's websocket upgrade,
``set_protocol``) is fed through the guard too.

A refusal is written as soon as the head is in: a client that pipelines a request
behind one still being answered, and then sends one over a limit, gets a garbled
answer; it harms only itself.
"""
from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from ..limits import FRAME_COST, LINGER, LINGER_LIMIT, HttpLimits, ReceiveBudget, body_refusal
from .request_bounds import RequestBounds
from .websocket_frames import FrameCounter

log = logging.getLogger("sticky_cluster.worker")

RESPONSE_431 = (b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
                b"Content-Type: text/plain\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
"""The whole answer to a request head over :data:`~workers.asyncio.request_bounds.HEAD_LIMIT`."""

_HTTP, _UPGRADING, _WEBSOCKET, _REFUSED = range(4)
"""What the connection is: requests followed; a request that asked for an upgrade waits
for its answer; a websocket; refused (its bytes are dropped until it closes)."""


class GuardedTransport:
    """The transport a server's protocol sees behind a :class:`ConnectionGuard`.

    Reading is paused while the server or the guard wants it paused;
    ``set_protocol`` makes the guard feed the new protocol; while an upgrade is asked
    for, the first thing the server writes tells the guard whether it was granted.
    """

    def __init__(self, transport: asyncio.Transport, guard: "ConnectionGuard") -> None:
        self._transport = transport
        self._guard = guard
        self._server_paused = False
        self._guard_paused = False

    def pause_reading(self) -> None:
        self._server_paused = True
        self._apply()

    def resume_reading(self) -> None:
        self._server_paused = False
        self._apply()

    def is_reading(self) -> bool:
        return not self._server_paused and self._transport.is_reading()

    def hold(self, held: bool) -> None:
        """Pause (True) or resume (False) reading for the guard's own reasons."""
        self._guard_paused = held
        self._apply()

    def _apply(self) -> None:
        if self._transport.is_closing():
            return
        if self._server_paused or self._guard_paused:
            self._transport.pause_reading()
        else:
            self._transport.resume_reading()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._guard.protocol = protocol  # type: ignore[assignment]

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._guard.protocol

    def write(self, data: bytes) -> None:
        self._transport.write(data)
        if self._guard.upgrading:
            self._guard.answered(bytes(data[:12]))

    def writelines(self, chunks: Any) -> None:
        chunks = list(chunks)
        self._transport.writelines(chunks)
        if self._guard.upgrading and chunks:
            self._guard.answered(bytes(b"".join(chunks)[:12]))

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._transport, name)
        setattr(self, name, value)
        return value


class ConnectionGuard(asyncio.Protocol):
    """Applies ``limits`` to one connection and feeds the rest to ``protocol``.

    :param protocol: what the transport would drive (the server's protocol, or a wrapper).
    :param address: the client's address, for the log.
    :param limits: the worker's limits.
    :param rate: bytes per second a websocket may send on average (``--websocket-rate``);
                 a message of the size limit may always come at once.
    """

    _dropped = 0
    """Bytes dropped since the connection was refused (an instance's own once it is)."""

    def __init__(self, protocol: asyncio.Protocol, address: tuple[str, int], *,
                 limits: HttpLimits, rate: float) -> None:
        self.protocol = protocol
        """The protocol fed (the server's, then the one it handed the connection to)."""
        self._limits = limits
        self._rate = rate
        self._address = address
        self._bounds: RequestBounds | None = RequestBounds()
        """Follows the requests; None once the connection is a websocket (it holds the
        upgrade request's head: 0.9 KB per idle websocket, measured with ``bench.memtrace``)."""
        self._state = _HTTP
        self._transport: asyncio.Transport | None = None
        self._view: GuardedTransport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._last_read = 0.0
        self._waiting = b""  # bytes that came after a request that asked for an upgrade
        self._frames: FrameCounter | None = None
        self._budget: ReceiveBudget | None = None
        self._held: tuple[bytes, list[int]] | None = None  # websocket bytes past the budget

    @property
    def upgrading(self) -> bool:
        """A request that asked for an upgrade waits for the server's answer."""
        return self._state == _UPGRADING

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Give the server a :class:`GuardedTransport`; start the header deadline."""
        self._transport = transport  # type: ignore[assignment]
        self._view = GuardedTransport(transport, self)  # type: ignore[arg-type]
        self.protocol.connection_made(self._view)  # type: ignore[arg-type]
        self._start_header_deadline()

    def data_received(self, data: bytes) -> None:
        if self._state == _HTTP:
            self._follow(data)
        elif self._state == _WEBSOCKET:
            self._meter(data)
        elif self._state == _UPGRADING:
            self._waiting += data  # what the transport had read before it paused
        else:  # refused: dropped, LINGER_LIMIT bytes at most
            self._dropped += len(data)
            if self._dropped >= LINGER_LIMIT and self._transport is not None:
                self._transport.close()

    def eof_received(self) -> bool | None:
        if self._state == _REFUSED:
            return None  # close: the answer is written
        return self.protocol.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        self.protocol.connection_lost(exc)

    def pause_writing(self) -> None:
        self.protocol.pause_writing()

    def resume_writing(self) -> None:
        self.protocol.resume_writing()

    def answered(self, start: bytes) -> None:
        """The server wrote ``start`` first after a request asked for an upgrade."""
        assert self._view is not None
        waiting, self._waiting = self._waiting, b""
        if start.startswith(b"HTTP/1.1 101"):
            self._state = _WEBSOCKET
            self._bounds = None
            self._frames = FrameCounter()
            self._budget = ReceiveBudget(self._rate, self._limits.max_body + FRAME_COST)
        else:
            self._state = _HTTP
            assert self._bounds is not None
            self._bounds.resume()
        self._view.hold(False)
        if waiting:
            asyncio.get_running_loop().call_soon(self.data_received, waiting)

    # ------------------------------------------------------------------ HTTP

    def _follow(self, data: bytes) -> None:
        bounds = self._bounds
        assert bounds is not None
        while data:
            if bounds.lost:  # a request the guard cannot follow: the server's own limits hold
                self._cancel_timer()
                self.protocol.data_received(data)
                return
            if bounds.at_start and self._timer is None:
                self._start_header_deadline()
            used = bounds.feed(data)
            if bounds.too_large:
                self._refuse(RESPONSE_431, "a request head over the limit")
                return
            head = bounds.head
            if head is not None:
                self._cancel_timer()
                refusal = body_refusal(head.method, head.target, head.fields.get("content-length"),
                                       head.fields.get("transfer-encoding"), self._limits)
                if refusal is not None:
                    length = head.fields.get("content-length", "unknown")
                    self._refuse(refusal, f"a POST body of {length} bytes "
                                          f"(limit {self._limits.max_body})")
                    return
            self.protocol.data_received(data[:used])
            data = data[used:]
            if self._transport is None or self._transport.is_closing():
                return  # the server closed it (a malformed request)
            if bounds.upgrading:
                self._state = _UPGRADING
                self._waiting = data
                assert self._view is not None
                self._view.hold(True)
                return
            if bounds.in_body:
                self._last_read = asyncio.get_running_loop().time()
                if self._timer is None:
                    self._start_read_deadline()
            elif bounds.at_start:
                self._cancel_timer()  # a whole request: the server's keep-alive timeout is next

    def _refuse(self, answer: bytes, what: str) -> None:
        transport = self._transport
        assert transport is not None
        log.info("worker %d: refused %s from %s: %s", os.getpid(), what, self._address[0],
                 answer[9:12].decode())
        self._state = _REFUSED
        self._cancel_timer()
        transport.write(answer)
        if transport.can_write_eof():
            transport.write_eof()
        self._timer = asyncio.get_running_loop().call_later(LINGER, transport.close)

    # ------------------------------------------------------------------ websocket

    def _meter(self, data: bytes, starts: list[int] | None = None) -> None:
        """Feed the websocket's bytes to the server as far as the budget allows.

        Each frame is charged its bytes plus :data:`~workers.limits.FRAME_COST` as it
        begins; once the budget says wait, the rest of ``data`` is held (``starts``: the
        offsets of its frames, already counted) and reading pauses until then.
        """
        assert self._frames is not None and self._budget is not None and self._view is not None
        if self._held is not None:  # read before the pause took: queue behind the held bytes
            held, held_starts = self._held
            self._held = (held + data, held_starts + [at + len(held) for at in
                                                      self._frames.starts(data)])
            return
        if starts is None:
            starts = self._frames.starts(data)
        edges = [0, *starts, len(data)]  # piece k runs edges[k]..edges[k+1]; k >= 1 begins a frame
        for piece in range(len(edges) - 1):
            size = edges[piece + 1] - edges[piece]
            if not size and not piece:
                continue  # no bytes of an earlier frame's payload first
            wait = self._budget.charge(size + (FRAME_COST if piece else 0))
            if wait:
                end = edges[piece + 1]
                self.protocol.data_received(data[:end])
                if self._transport is None or self._transport.is_closing():
                    return
                if end < len(data):
                    self._held = (data[end:], [at - end for at in starts[piece:]])
                self._view.hold(True)
                self._timer = asyncio.get_running_loop().call_later(wait, self._read_on)
                return
        self.protocol.data_received(data)

    def _read_on(self) -> None:
        assert self._view is not None
        self._timer = None
        if self._held is not None:
            data, starts = self._held
            self._held = None
            self._meter(data, starts)
        if self._timer is None:
            self._view.hold(False)

    # ------------------------------------------------------------------ deadlines

    def _start_header_deadline(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(
            self._limits.header_timeout, self._timed_out, "a complete request head")

    def _start_read_deadline(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(
            self._limits.header_timeout, self._body_stalled)

    def _body_stalled(self) -> None:
        self._timer = None
        if self._bounds is None or not self._bounds.in_body:
            return
        idle = asyncio.get_running_loop().time() - self._last_read
        if idle < self._limits.header_timeout:
            self._timer = asyncio.get_running_loop().call_later(
                self._limits.header_timeout - idle, self._body_stalled)
        else:
            self._timed_out("the rest of a request body")

    def _timed_out(self, what: str) -> None:
        self._timer = None
        log.debug("worker %d: %s sent no %s within %.3g s", os.getpid(), self._address,
                  what, self._limits.header_timeout)
        if self._transport is not None:
            self._transport.abort()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
