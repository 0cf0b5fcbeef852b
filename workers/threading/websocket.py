"""python-engineio's threading websocket (simple-websocket), with the worker's limits.

In threading mode python-engineio serves a websocket with ``simple_websocket.Server``
and no message size: simple-websocket buffers a message whole, however many fragments
it comes in, and inflates a compressed one whole; Engine.IO checks the size only then.
Swapped in as the Engine.IO server's ``websocket`` class (:func:`install`; neither
library is forked):

- the message size (``max_http_buffer_size``) is simple-websocket's own
  ``max_message_size``, checked as each piece of a message arrives (it reads
  :data:`RECEIVE_BYTES` at a time): past it the connection is closed with 1009;
- per-message deflate stays on, bounded: the negotiated extension inflates a message's
  pieces with a ceiling of the bytes the message may still have
  (:class:`BoundedDeflate`), so a small compressed message cannot inflate past the
  limit, not even for a moment;
- every websocket reads through a :class:`~workers.limits.ReceiveBudget`: each event
  costs its (inflated) bytes plus a fixed cost; past the rate its reader thread sleeps
  and TCP slows the sender;
- an exception after the upgrade is logged and the connection closed (1011); nothing
  of it reaches the client.
"""
from __future__ import annotations

import logging
import os
import time
import zlib
from typing import Any, Iterator

import simple_websocket
from engineio.async_drivers._websocket_wsgi import SimpleWebSocketWSGI
from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import CloseReason

from ..limits import FRAME_COST, ReceiveBudget

log = logging.getLogger("sticky_cluster.worker")

RECEIVE_BYTES = 4096
"""Bytes simple-websocket reads at a time (its default)."""

MESSAGE_TOO_BIG = 1009
INTERNAL_ERROR = 1011


class BoundedDeflate(PerMessageDeflate):
    """wsproto's per-message deflate, inflating no message past ``max_message`` bytes."""

    max_message = 0
    _inflated = 0

    def frame_inbound_payload_data(self, proto: Any, data: bytes) -> bytes | CloseReason:
        if not self._inbound_compressed or not self._inbound_is_compressible:
            return data
        room = self.max_message + 1 - self._inflated
        try:
            out = self._decompressor.decompress(bytes(data), room)  # type: ignore[union-attr]
        except zlib.error:
            return CloseReason.INVALID_FRAME_PAYLOAD_DATA
        self._inflated += len(out)
        if self._inflated > self.max_message:
            return CloseReason.MESSAGE_TOO_BIG
        return out

    def frame_inbound_complete(self, proto: Any, fin: bool) -> bytes | CloseReason | None:
        if fin:
            self._inflated = 0
        return super().frame_inbound_complete(proto, fin)


class GuardedServer(simple_websocket.Server):
    """simple-websocket's server with a bounded inflate and a receive budget; made by
    :class:`GuardedWebSocketWSGI`, which sets :attr:`budget`."""

    budget: ReceiveBudget

    def handshake(self) -> None:
        super().handshake()
        connection = getattr(self.ws, "connection", None)
        for extension in getattr(getattr(connection, "_proto", None), "extensions", ()):
            if type(extension) is PerMessageDeflate:
                extension.__class__ = BoundedDeflate  # adds behaviour only
                extension.max_message = self.max_message_size
        events = self.ws.events
        self.ws.events = lambda: self._metered(events())

    def _metered(self, events: Iterator[Any]) -> Iterator[Any]:
        for event in events:
            wait = self.budget.charge(len(getattr(event, "data", b"") or b"") + FRAME_COST)
            if wait:
                time.sleep(wait)
            yield event


class GuardedWebSocketWSGI(SimpleWebSocketWSGI):
    """The Engine.IO websocket endpoint that serves a :class:`GuardedServer`; see :func:`install`.

    It returns without starting a response: the threading server then leaves the
    socket to the websocket (:data:`workers.threading.http.TAKEN`).
    """

    rate: float
    max_message: int

    def __call__(self, environ: dict, start_response: Any) -> Any:
        budget = ReceiveBudget(self.rate, self.max_message + FRAME_COST)
        kind = type("GuardedServer", (GuardedServer,), {"budget": budget})
        try:
            self.ws = kind(environ, receive_bytes=RECEIVE_BYTES,
                           max_message_size=self.max_message)
        except Exception:  # noqa: BLE001 - a handshake wsproto refused
            start_response("400 Bad Request", [("Content-Type", "text/plain"),
                                               ("Content-Length", "0")])
            return [b""]
        try:
            self.app(self)
        except Exception:  # noqa: BLE001 - logged, never sent
            log.exception("worker %d: websocket of %s failed", os.getpid(),
                          environ.get("REMOTE_ADDR"))
            if self.ws.connected:
                self.ws.close(INTERNAL_ERROR)
        return []


def install(eio_server: Any, rate: float) -> None:
    """Make ``eio_server`` (a python-engineio Server in threading mode) serve guarded websockets.

    :param rate: bytes per second one websocket may send on average; at least one
                 message of the size limit may always come at once.
    """
    endpoint = type("GuardedWebSocketWSGI", (GuardedWebSocketWSGI,), {
        "rate": float(rate), "max_message": int(eio_server.max_http_buffer_size)})
    eio_server._async = {**eio_server._async, "websocket": endpoint}
