"""python-engineio's eventlet websocket, with the message size and a per-connection budget.

``eventlet.websocket`` checks the size of each frame, not of the message: a message sent
in fragments under the limit is buffered in full (36 MB in 900 KB fragments cost +157 MB
RSS). It unmasks in pure Python, byte by byte (~0.5 s of CPU per MB), and a green
``recv`` never yields while data is there: one client could hold the worker's whole CPU
and stall every other client (6 s, measured). Here, swapped in as the Engine.IO
server's ``websocket`` class (not a fork of either library):

- :class:`GuardedWebSocket` counts a message's bytes as its fragments arrive and fails
  the connection (close code 1009) as soon as the message is over the limit
  (``max_http_buffer_size``), and unmasks with one big-integer XOR (C speed);
- every websocket reads through a :class:`~workers.limits.ReceiveBudget` (its bytes,
  plus a fixed cost per frame): past its rate the reader sleeps and TCP slows the
  sender; below it, the reader still yields every :data:`~workers.limits.QUANTUM` of work;
- permessage-deflate is granted only with ``--websocket-deflate`` (each client that has it
  keeps a compressor and an inflater), with :mod:`workers.deflate_settings`' windows,
  compressor memory and threshold;
- an exception after the upgrade is logged and the connection closed: nothing of it
  is written into the upgraded socket (eventlet would write a ``500`` and a traceback);
  a client that resets its connection before the ``101`` is a DEBUG line (thousands
  leave so in a storm), not an ERROR with a traceback.
"""
from __future__ import annotations

import logging
import os
import sys
from typing import Any

import eventlet
from engineio.async_drivers.eventlet import WebSocketWSGI
from eventlet import websocket, wsgi

from .. import deflate_settings
from ..limits import FRAME_COST, Pacer, ReceiveBudget

log = logging.getLogger("sticky_cluster.worker")

SMALL_OBJECT_LIMIT = 512
"""The largest object CPython's own allocator (pymalloc) serves; bigger ones go to malloc."""

READ_AHEAD = SMALL_OBJECT_LIMIT - sys.getsizeof(b"")
"""Bytes a websocket's small reads (a frame's header, mask, short payload) ask of the socket
at once; what is over is kept for the next reads. No more than fits a bytes object that
pymalloc serves: every ``recv`` allocates its whole size first, and 8 KB asked of malloc
for each read (then shrunk to what came) left each idle client 2.5 KB more of resident
heap than one eventlet process holds (docs/benchmarks.md, memory per idle client)."""


class MeteredSocket:
    """A socket whose reads, and the frames read from it, are paced by a :class:`Pacer`.

    A frame's small reads (its header, mask and a short payload: three or four ``recv``
    calls) are served from one read of up to :data:`READ_AHEAD` bytes, and owed and paid
    with the next frame's fixed cost, in one charge per frame instead of one per read;
    reads that add up to :data:`~workers.limits.FRAME_COST` are paid at once, so a large
    message is still paced as it arrives. The budget is charged the bytes handed to the
    parser, as they are handed. (Measured on the echo bench, 16-byte messages: the pacing
    took 3.6 % of the worker's samples with a charge per read; eventlet's parser alone
    makes three green ``recv`` calls, three system calls, per frame.)
    """

    __slots__ = ("_sock", "_pacer", "_owed", "_ahead", "sendall")  # one per websocket

    def __init__(self, sock: Any, budget: ReceiveBudget) -> None:
        self._sock = sock
        self._pacer = Pacer(budget)
        self._owed = 0
        self._ahead = b""  # read from the socket, not yet handed to the parser
        self.sendall = sock.sendall  # every frame sent: no __getattr__ on the way

    def recv(self, size: int) -> bytes:
        # Hand-written read-ahead (eventlet's parser asks for 2, 4, then n bytes): one
        # system call per frame, or per several pipelined frames, instead of three.
        chunk = self._ahead or self._sock.recv(max(size, READ_AHEAD))
        data = chunk[:size]  # the chunk itself when it is no longer (no copy)
        self._ahead = chunk[size:]
        self._owed += len(data)
        if self._owed >= FRAME_COST:
            self._pay()
        return data

    def pay_frame(self) -> None:
        """Charge a frame's fixed cost (and the reads owed); sleep (or yield) as long as
        the pacer says."""
        self._owed += FRAME_COST
        self._pay()

    def _pay(self) -> None:
        wait = self._pacer.charge(self._owed)
        self._owed = 0
        if wait is not None:
            eventlet.sleep(wait)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class GuardedWebSocket(websocket.RFC6455WebSocket):
    """An RFC 6455 websocket that limits whole messages and unmasks fast."""

    socket: MeteredSocket

    class Message(websocket.RFC6455WebSocket.Message):
        """A message that refuses to grow past ``max_frame_length`` bytes."""

        size = 0

        def push(self, data: bytes, final: bool = False) -> None:
            self.size += len(data)
            if self.size > self.max_frame_length:
                raise websocket.FailedConnectionError(
                    1009, f"Message over the limit of {self.max_frame_length} bytes.")
            super().push(data, final)

    def _recv_frame(self, message: Any = None) -> Any:
        self.socket.pay_frame()
        return super()._recv_frame(message)

    @staticmethod
    def _apply_mask(data: bytes, mask: Any, length: int | None = None, offset: int = 0) -> bytes:
        length = len(data) if length is None else length
        turn = offset % 4
        key = bytes(mask[turn:] + mask[:turn])  # the mask as it lines up at ``offset``
        stream = (key * (length // 4 + 1))[:length]
        masked = int.from_bytes(data[:length], "little") ^ int.from_bytes(stream, "little")
        return masked.to_bytes(length, "little")


class DeflatingWebSocket(GuardedWebSocket):
    """A :class:`GuardedWebSocket` granted permessage-deflate: :mod:`workers.deflate_settings`'
    compressor memory and threshold (eventlet takes zlib's defaults and compresses every
    message). A class of its own so that a websocket without deflate pays nothing for it."""

    _plain = False
    """Whether the message being packed goes out uncompressed (deflate_settings' threshold)."""

    def _pack_message(self, message: Any, *args: Any, **kwargs: Any) -> bytes:
        # eventlet packs each message whole, in one frame; its compressor comes from
        # _get_permessage_deflate_enc, which is told here whether the message is short.
        self._plain = deflate_settings.sent_plain(message)
        return super()._pack_message(message, *args, **kwargs)

    def _get_permessage_deflate_enc(self) -> Any:
        # eventlet's, with deflate_settings' compressor memory (eventlet takes zlib's default)
        # and threshold.
        options = self.extensions.get("permessage-deflate")
        if options is None or self._plain:
            return None
        if options.get("server_no_context_takeover"):
            return deflate_settings.compressor(options["server_max_window_bits"])
        if self._deflate_enc is None:
            self._deflate_enc = deflate_settings.compressor(options["server_max_window_bits"])
        return self._deflate_enc


class ClientGone(Exception):
    """The client reset its connection before its websocket's ``101`` could be written."""


class GuardedWebSocketWSGI(WebSocketWSGI):
    """The Engine.IO websocket endpoint that serves :class:`GuardedWebSocket`; use :func:`install`."""

    rate: float
    deflate: bool
    """Whether permessage-deflate is granted to a client that offers it."""

    def __init__(self, handler: Any, server: Any) -> None:
        super().__init__(handler, server)
        self._ws: GuardedWebSocket | None = None

    def _negotiate_permessage_deflate(self, extensions: Any) -> Any:
        granted = super()._negotiate_permessage_deflate(extensions) if self.deflate else None
        if granted is None:
            return None
        # deflate_settings' windows: the server's always (announced), the client's where
        # its offer lets the server choose it.
        granted["server_max_window_bits"] = deflate_settings.window_bits(
            granted.get("server_max_window_bits"))
        if "client_max_window_bits" in granted:
            granted["client_max_window_bits"] = deflate_settings.window_bits(
                granted["client_max_window_bits"])
        return granted

    def _handle_hybi_request(self, environ: dict) -> Any:
        try:
            ws = super()._handle_hybi_request(environ)  # its one write: the 101
        except (BrokenPipeError, ConnectionResetError) as gone:
            raise ClientGone from gone
        # adds behaviour only, no state of its own (but, with deflate, whether the message
        # being packed is short)
        deflating = "permessage-deflate" in ws.extensions
        ws.__class__ = DeflatingWebSocket if deflating else GuardedWebSocket
        burst = self.max_frame_length + FRAME_COST
        ws.socket = MeteredSocket(ws.socket, ReceiveBudget(self.rate, burst))
        self._ws = ws
        return ws

    def __call__(self, environ: dict, start_response: Any) -> Any:
        try:
            return super().__call__(environ, start_response)
        except ClientGone:
            log.debug("worker %d: %s went before its websocket's 101", os.getpid(),
                      environ.get("REMOTE_ADDR"))
            wsgi.WSGI_LOCAL.already_handled = True
            return []
        except Exception:
            if self._ws is None:
                raise  # not upgraded: an ordinary HTTP error (see workers.wsgi_errors)
            log.exception("worker %d: websocket of %s failed", os.getpid(),
                          environ.get("REMOTE_ADDR"))
            self._ws.close(close_data=(1011, ""))
            wsgi.WSGI_LOCAL.already_handled = True
            return []


def install(eio_server: Any, rate: float, deflate: bool) -> None:
    """Make ``eio_server`` (a python-engineio Server) serve guarded websockets.

    :param rate: bytes per second one websocket may send on average; at least one
                 message of the size limit may always come at once.
    :param deflate: grant permessage-deflate to a client that offers it.
    """
    endpoint = type("GuardedWebSocketWSGI", (GuardedWebSocketWSGI,),
                    {"rate": float(rate), "deflate": bool(deflate)})
    eio_server._async = {**eio_server._async, "websocket": endpoint}
