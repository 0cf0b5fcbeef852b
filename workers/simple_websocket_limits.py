"""python-engineio's simple-websocket endpoint, with the worker's websocket limits.

Engine.IO serves websockets with simple-websocket (over wsproto) under gevent (when
gevent-websocket is not installed) and under threads; the gevent worker installs this
module's endpoint (:func:`install`, with its Engine.IO server's thread, event and sleep),
the threading worker its own websocket without a reader thread
(:mod:`workers.threading.websocket`), which uses this module's bounded inflate, frame cost
and close wait. As it comes, nothing bounds what one client makes its
worker hold or do: python-engineio gives it no message size, and wsproto inflates a
compressed frame whole whatever it inflates to (10 websockets sending 730 KB of
permessage-deflate messages took a gevent worker to 853 MB); a ``recv`` does not yield
while data is there, so one busy client holds the worker. Swapped in as the Engine.IO
server's ``websocket`` class (not a fork of either library):

- **permessage-deflate, with** ``--websocket-deflate`` **only, inflated with a bound**
  (:func:`extensions`, :class:`BoundedDeflate`): the inflated bytes of a message are
  counted as its frames arrive, no inflate call may produce more than what is left of
  the limit (``max_http_buffer_size``) plus one byte, and the websocket fails with close
  code 1009 as soon as the message passes the limit; its windows, compressor memory and
  threshold are :mod:`workers.deflate_settings`';
  uncompressed messages are counted the same way, per chunk read (simple-websocket's
  ``max_message_size``), never buffered whole first;
- every event read is charged to a :class:`~workers.limits.Pacer`: its payload after
  inflating, plus :data:`~workers.limits.FRAME_COST` once per frame (simple-websocket
  reads 4 KiB at a time, and wsproto makes an event of each piece of a frame: the
  surcharge goes with the piece that ends the frame); past ``--websocket-rate`` the
  reader sleeps and TCP slows the sender; below it, it yields every
  :data:`~workers.limits.QUANTUM` of work;
- an upgrade that wsproto refuses is answered ``400``;
- when the app is done with the websocket, the client gets :data:`CLOSE_WAIT` seconds
  to answer the close; then the socket is shut down, so a client that never answers
  holds nothing;
- an exception after the upgrade is logged and the websocket closed (1011): nothing of
  it reaches the client.

The HTTP server learns that the connection is the websocket's from :data:`TAKEN_OVER`
in the environ (gevent; the threading server, from a call that started no response).
"""
from __future__ import annotations

import logging
import os
import socket
import zlib
from typing import Any, Callable, Iterator

import simple_websocket
from engineio.async_drivers._websocket_wsgi import SimpleWebSocketWSGI
from wsproto.events import AcceptConnection, Event, Message, Request
from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import CloseReason, Opcode

from . import deflate_settings
from .limits import FRAME_COST, Pacer, ReceiveBudget

log = logging.getLogger("sticky_cluster.worker")

TAKEN_OVER = "sticky_cluster.websocket"
"""Set in the WSGI environ once a websocket is accepted: from then on the connection is
the websocket's, and the HTTP server must write nothing more to it nor read requests."""

SOCKET_KEY = "werkzeug.socket"
"""The WSGI environ key of the connection's socket, the first place simple-websocket looks
(the gevent and threading workers' HTTP servers set it). Werkzeug's key, not gunicorn's:
python-engineio's ``WSGIApp`` makes a new class for every request that has
``gunicorn.socket`` (2.5 KB per websocket client, kept for its session)."""

INTERNAL_ERROR = 1011
"""The close code of a websocket whose app failed."""

CLOSE_WAIT = 5.0
"""Seconds a client gets to answer the server's close before its socket is shut down."""


class BoundedDeflate(PerMessageDeflate):
    """wsproto's permessage-deflate that never inflates a message past ``limit`` bytes, with
    the windows, compressor memory and threshold of :mod:`workers.deflate_settings`.

    :param limit: the most bytes one message may inflate to.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(server_max_window_bits=deflate_settings.WINDOW_BITS)
        self.limit = limit
        self._inflated = 0

    def _parse_params(self, params: str) -> tuple[int | None, int | None]:
        # What wsproto answers the offer with: the client's window where the client lets
        # the server choose it, the server's always.
        client_bits, server_bits = super()._parse_params(params)
        return (None if client_bits is None else deflate_settings.window_bits(client_bits),
                deflate_settings.window_bits(server_bits))

    def frame_outbound(self, proto: Any, opcode: Opcode, rsv: Any, data: bytes,
                       fin: bool) -> Any:
        if opcode in (Opcode.TEXT, Opcode.BINARY):  # a message's first frame
            if fin and deflate_settings.sent_plain(data):
                return rsv, data  # the whole message, short: plain (RSV1 not set)
            if self._compressor is None:
                self._compressor = deflate_settings.compressor(self.server_max_window_bits)
        return super().frame_outbound(proto, opcode, rsv, data, fin)

    def frame_inbound_header(self, proto: Any, opcode: Any, rsv: Any,
                             payload_length: int) -> Any:
        if self._inbound_compressed is None:  # a message begins
            self._inflated = 0
        return super().frame_inbound_header(proto, opcode, rsv, payload_length)

    def frame_inbound_payload_data(self, proto: Any, data: bytes) -> bytes | CloseReason:
        if not self._inbound_compressed or not self._inbound_is_compressible:
            return data
        assert self._decompressor is not None
        try:
            inflated = self._decompressor.decompress(bytes(data), self.limit - self._inflated + 1)
        except zlib.error:
            return CloseReason.INVALID_FRAME_PAYLOAD_DATA
        return self._count(inflated)

    def frame_inbound_complete(self, proto: Any, fin: bool) -> bytes | CloseReason | None:
        # The whole frame went through the bounded inflate above: what is left is the
        # end of the message (an empty block), nothing that can grow.
        tail = super().frame_inbound_complete(proto, fin)
        return tail if tail is None or isinstance(tail, CloseReason) else self._count(tail)

    def _count(self, inflated: bytes) -> bytes | CloseReason:
        self._inflated += len(inflated)
        return CloseReason.MESSAGE_TOO_BIG if self._inflated > self.limit else inflated


def cost_of(event: Event) -> int:
    """The bytes ``event`` is charged: a piece of a message its payload, plus
    :data:`~workers.limits.FRAME_COST` if it ends its frame; any other event (ping,
    close) :data:`~workers.limits.FRAME_COST`."""
    if isinstance(event, Message):
        return len(event.data) + (FRAME_COST if event.frame_finished else 0)
    return FRAME_COST


class PacedConnection:
    """A wsproto connection whose events are charged to a :class:`~workers.limits.Pacer`.

    :param connection: the ``WSConnection`` simple-websocket reads through.
    :param pacer: the websocket's pacer.
    :param sleep: the runtime's sleep (0: a bare yield).
    """

    def __init__(self, connection: Any, pacer: Pacer, sleep: Callable[[float], None]) -> None:
        self._connection = connection
        self._pacer = pacer
        self._sleep = sleep

    def events(self) -> Iterator[Event]:
        """The connection's events; sleeps between them as the pacer says."""
        for event in self._connection.events():
            wait = self._pacer.charge(cost_of(event))
            if wait is not None:
                self._sleep(wait)
            yield event

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)


def extensions(deflate: bool, limit: int) -> list[PerMessageDeflate]:
    """What the server grants a client that offers permessage-deflate: :class:`BoundedDeflate`
    (``limit``: the most bytes a message may inflate to) when ``deflate``, else nothing."""
    return [BoundedDeflate(limit)] if deflate else []


class GuardedServer(simple_websocket.Server):
    """simple-websocket's server side with a bounded inflate and a paced reader.

    :param environ: the WSGI environ of the upgrade request.
    :param pacer: the websocket's pacer.
    :param sleep: the runtime's sleep.
    :param deflate: grant permessage-deflate (:func:`extensions`) to a client that offers it.
    :param kwargs: simple-websocket's (``max_message_size``, ``thread_class``, …).
    """

    def __init__(self, environ: dict, pacer: Pacer, sleep: Callable[[float], None],
                 deflate: bool, **kwargs: Any) -> None:
        self._pacer = pacer
        self._sleep = sleep
        self._deflate = deflate
        super().__init__(environ, **kwargs)

    def handshake(self) -> None:
        """simple-websocket's handshake, granting :func:`extensions` instead of wsproto's
        unbounded permessage-deflate."""
        self.ws = PacedConnection(self.ws, self._pacer, self._sleep)
        head = ["GET / HTTP/1.1\r\n"]
        for key, value in self.environ.items():
            if key.startswith("HTTP_"):
                head.append(f"{'-'.join(p.capitalize() for p in key[5:].split('_'))}: {value}\r\n")
        self.ws.receive_data("".join(head).encode() + b"\r\n")
        for event in self.ws.events():
            if isinstance(event, Request):
                self.subprotocol = self.choose_subprotocol(event)
                self.sock.send(self.ws.send(AcceptConnection(
                    subprotocol=self.subprotocol,
                    extensions=extensions(self._deflate, self.max_message_size))))
                self.connected = True


class GuardedWebSocketWSGI(SimpleWebSocketWSGI):
    """The Engine.IO websocket endpoint that serves :class:`GuardedServer`; use :func:`install`."""

    rate: float
    """Bytes per second one websocket may send on average."""
    max_message_size: int
    """The most bytes one message may have (inflated)."""
    deflate: bool
    """Whether permessage-deflate is granted to a client that offers it."""
    sleep: Callable[[float], None]
    """The runtime's sleep."""
    thread_class: Any
    """The runtime's thread (simple-websocket reads in one)."""
    event_class: Any
    """The runtime's event."""

    def __init__(self, handler: Any, server: Any) -> None:
        super().__init__(handler, server, thread_class=self.thread_class,
                         event_class=self.event_class)

    def __call__(self, environ: dict, start_response: Any) -> Any:
        budget = ReceiveBudget(self.rate, self.max_message_size + FRAME_COST)
        try:
            self.ws = GuardedServer(environ, Pacer(budget), self.sleep, self.deflate,
                                    max_message_size=self.max_message_size,
                                    **self.server_args)
        except Exception:  # noqa: BLE001 - an upgrade wsproto refused
            start_response("400 Bad Request", [("Content-Type", "text/plain"),
                                               ("Content-Length", "0")])
            return [b""]
        environ[TAKEN_OVER] = True
        try:
            self.app(self)
            return []
        except Exception:  # noqa: BLE001 - logged, never sent
            log.exception("worker %d: websocket of %s failed", os.getpid(),
                          environ.get("REMOTE_ADDR"))
            if self.ws.connected:
                self.ws.close(reason=INTERNAL_ERROR)
            return []
        finally:
            self._finish()

    def _finish(self) -> None:
        """Give the reader :data:`CLOSE_WAIT` seconds to see the client's close, then end it."""
        reader = self.ws.thread
        reader.join(CLOSE_WAIT)
        # a greenlet (gevent) or a thread (threading)
        alive = not reader.dead if hasattr(reader, "dead") else reader.is_alive()
        if not alive:
            return
        try:
            self.ws.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def install(eio_server: Any, rate: float, deflate: bool) -> None:
    """Make ``eio_server`` (a python-engineio Server on a simple-websocket driver: gevent
    or threading) serve guarded websockets.

    :param rate: bytes per second one websocket may send on average; one message of the
                 size limit may always come at once.
    :param deflate: grant permessage-deflate to a client that offers it.
    """
    driver = eio_server._async
    endpoint = type("GuardedWebSocketWSGI", (GuardedWebSocketWSGI,), {
        "rate": float(rate), "deflate": bool(deflate),
        "max_message_size": int(eio_server.max_http_buffer_size),
        "sleep": staticmethod(driver["sleep"]), "thread_class": driver["thread"],
        "event_class": driver["event"]})
    eio_server._async = {**driver, "websocket": endpoint}
