"""The threading worker's websockets: read by the thread that waits for a message, no thread
of their own.

Engine.IO's threading websocket handler waits for each message in the request's thread
(``ws.wait()``) and writes from a writer thread of its own (``ws.send()``). simple-websocket,
which python-engineio serves it with, adds a reader thread per websocket that reads the
socket and hands each message to ``wait()`` through an event: every message then costs
two thread wake-ups before the app sees it, and every idle client one more thread's stack.
:class:`InlineWebSocket` reads and parses the frames (wsproto, as simple-websocket does) in
the thread that calls :meth:`~InlineWebSocket.receive`, answers pings and the close
inline, and writes under a lock from any thread: a message costs one wake-up.

The worker's limits are the same as simple-websocket's under gevent
(:mod:`workers.simple_websocket_limits`, whose parts it uses): permessage-deflate (with
``--websocket-deflate`` only) inflated with a bound
(:class:`~workers.simple_websocket_limits.BoundedDeflate`), a message's size
counted per piece as it arrives (close 1009 past ``max_http_buffer_size``), every event
charged to a :class:`~workers.limits.Pacer` (``--websocket-rate``), an upgrade wsproto
refuses answered ``400``, the client given
:data:`~workers.simple_websocket_limits.CLOSE_WAIT` seconds to answer the server's close,
an app's exception logged and the websocket closed 1011.

A read waits at most ``ping_interval + ping_timeout`` seconds (what python-engineio asks
of a websocket's socket): a client that sends nothing for that long, not even the answer
to Engine.IO's pings, is gone, and its thread is freed.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Any, Callable

from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (AcceptConnection, BytesMessage, CloseConnection, Event, Ping,
                            Request, TextMessage)
from wsproto.frame_protocol import CloseReason
from wsproto.utilities import LocalProtocolError

from ..limits import FRAME_COST, Pacer, ReceiveBudget
from ..simple_websocket_limits import (CLOSE_WAIT, INTERNAL_ERROR, SOCKET_KEY, TAKEN_OVER,
                                       cost_of, extensions)

log = logging.getLogger("sticky_cluster.worker")

RECEIVE_BYTES = 65536
"""Bytes asked of the socket per read (simple-websocket asks 4 KiB: a big message took
16 times the reads)."""

Message = str | bytes


class Refused(Exception):
    """The upgrade request is not one wsproto accepts."""


class InlineWebSocket:
    """A server websocket on ``sock``, accepted from the upgrade request's ``environ``.

    :param sock: the client's socket (blocking; its timeout bounds every read and write).
    :param environ: the WSGI environ of the upgrade request.
    :param max_message_size: the most bytes (characters, for text) one message may have.
    :param pacer: charged every event read; says when the reader must pause.
    :param deflate: grant permessage-deflate to a client that offers it.
    :raises Refused: wsproto refused the upgrade (nothing was sent).
    """

    def __init__(self, sock: socket.socket, environ: dict, max_message_size: int,
                 pacer: Pacer, deflate: bool) -> None:
        self.sock = sock
        self._max = max_message_size
        self._deflate = deflate
        self._pacer = pacer
        self._ws = WSConnection(ConnectionType.SERVER)
        self._send_lock = threading.Lock()
        self._pieces: list[Message] = []
        self._size = 0
        self._done = False
        self._refused = False
        """Closed for what the client sent: what it still sends is not read."""
        self._accept(environ)

    @property
    def open(self) -> bool:
        """Neither side has closed it."""
        return self._ws.state is ConnectionState.OPEN

    def _accept(self, environ: dict) -> None:
        head = ["GET / HTTP/1.1\r\n"]
        for key, value in environ.items():
            if key.startswith("HTTP_"):
                head.append(f"{'-'.join(p.capitalize() for p in key[5:].split('_'))}: {value}\r\n")
        try:
            self._ws.receive_data("".join(head).encode("latin-1") + b"\r\n")
            request = next((e for e in self._ws.events() if isinstance(e, Request)), None)
        except LocalProtocolError as exc:
            raise Refused(str(exc)) from None
        if request is None:
            raise Refused("no websocket upgrade request")
        self.sock.sendall(self._ws.send(AcceptConnection(
            extensions=extensions(self._deflate, self._max))))

    def receive(self) -> Message | None:
        """The next message, read in this thread; None once the websocket is closed (by
        the client, past a limit, or gone)."""
        while not self._done:
            message = self._take_events()  # what the last read brought beyond a message
            if message is not None or self._done:
                return message
            try:
                data = self.sock.recv(RECEIVE_BYTES)
            except OSError:  # reset, or silent past the timeout
                data = b""
            self._ws.receive_data(data or None)
        return None

    def _take_events(self) -> Message | None:
        """Act on what wsproto parsed up to the next complete message, and return it (the
        events after it stay parsed or buffered for the next call)."""
        for event in self._ws.events():
            # Only past the rate: the bare yield the pacer asks for after a quiet spell
            # (for green threads, which a busy reader would hold) is the GIL's switch
            # interval's job here, and cost a sixth of the samples of a worker echoing
            # to 100 clients (a GIL release and wait per message).
            wait = self._pacer.charge(cost_of(event))
            if wait:
                time.sleep(wait)
            if isinstance(event, (TextMessage, BytesMessage)):
                message = self._piece(event)
                if message is not None or self._done:
                    return message
            elif isinstance(event, Ping):
                self._send_quietly(event.response())
            elif isinstance(event, CloseConnection):
                # still OPEN: not the client's close but wsproto's verdict on its bytes (a
                # broken frame, a message inflated past the limit): answer it, read no more
                self._refused = self._ws.state is ConnectionState.OPEN
                if self._ws.state is not ConnectionState.CLOSED:
                    self._send_quietly(event.response())
                self._done = True
                return None
        return None

    def _piece(self, event: TextMessage | BytesMessage) -> Message | None:
        """Add ``event`` to the message in progress; the message when it is complete."""
        self._size += len(event.data)
        if self._size > self._max:
            self._send_quietly(CloseConnection(code=CloseReason.MESSAGE_TOO_BIG,
                                               reason="Message is too big"))
            self._done = self._refused = True
            return None
        self._pieces.append(event.data)
        if not event.message_finished:
            return None
        pieces, self._pieces, self._size = self._pieces, [], 0
        if len(pieces) == 1:
            return pieces[0]
        return "".join(pieces) if isinstance(event, TextMessage) else b"".join(pieces)

    def send(self, data: Message) -> None:
        """Send one message (binary for bytes, text otherwise), from any thread.

        :raises OSError: the websocket is closed, or the socket failed.
        """
        event = BytesMessage(data=data) if isinstance(data, bytes) else TextMessage(data=str(data))
        self._send_event(event)

    def close(self, code: int = CloseReason.NORMAL_CLOSURE, reason: str | None = None) -> None:
        """Send the close (once); the client's answer is read by :meth:`receive`."""
        self._send_quietly(CloseConnection(code=code, reason=reason))

    def _send_quietly(self, event: Event) -> None:
        try:
            self._send_event(event)
        except OSError:
            pass

    def _send_event(self, event: Event) -> None:
        with self._send_lock:
            try:
                out = self._ws.send(event)
            except LocalProtocolError:
                raise OSError("the websocket is closed") from None
            try:
                self.sock.sendall(out)
            except OSError:  # part of a frame may have gone: nothing more can follow it
                self._done = True
                try:
                    self.sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                raise

    def finish(self, wait: float) -> None:
        """Close (if not yet), give the client ``wait`` seconds to answer (none if it broke
        a limit or the protocol), close the socket."""
        if self.open:
            self.close()
        deadline = time.monotonic() + (0.0 if self._refused else wait)
        try:
            while self._ws.state is ConnectionState.LOCAL_CLOSING:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.sock.settimeout(left)
                data = self.sock.recv(RECEIVE_BYTES)
                if not data:
                    break
                self._ws.receive_data(data)
                list(self._ws.events())
        except (OSError, LocalProtocolError):
            pass
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


class InlineWebSocketWSGI:
    """The Engine.IO websocket endpoint of the threading worker; use :func:`install`.

    python-engineio makes one per upgrade request (``cls(handler, server)``), calls it as
    a WSGI app, and its handler calls :meth:`wait` in the request's thread and
    :meth:`send` and :meth:`close` from its writer thread.
    """

    rate: float
    """Bytes per second one websocket may send on average."""
    max_message_size: int
    """The most bytes one message may have (inflated)."""
    read_timeout: float
    """Seconds a read may wait for the client (``ping_interval + ping_timeout``)."""
    deflate: bool
    """Whether permessage-deflate is granted to a client that offers it."""

    def __init__(self, handler: Callable[[Any], Any], server: Any) -> None:
        self.app = handler
        self.ws: InlineWebSocket | None = None

    def __call__(self, environ: dict, start_response: Callable[..., Any]) -> Any:
        sock: socket.socket = environ[SOCKET_KEY]
        sock.settimeout(self.read_timeout)
        pacer = Pacer(ReceiveBudget(self.rate, self.max_message_size + FRAME_COST))
        try:
            self.ws = InlineWebSocket(sock, environ, self.max_message_size, pacer, self.deflate)
        except Refused:
            start_response("400 Bad Request", [("Content-Type", "text/plain"),
                                               ("Content-Length", "0")])
            return [b""]
        except OSError:  # the client went before the answer: the socket is ours to close
            sock.close()
            return []
        environ[TAKEN_OVER] = True
        try:
            self.app(self)
        except Exception:  # noqa: BLE001 - logged, never sent
            log.exception("worker %d: websocket of %s failed", os.getpid(),
                          environ.get("REMOTE_ADDR"))
            if self.ws.open:
                self.ws.close(INTERNAL_ERROR)
        finally:
            self.ws.finish(CLOSE_WAIT)
        return []

    def wait(self) -> Message | None:
        """The client's next message; None once it is closed."""
        assert self.ws is not None
        return self.ws.receive()

    def send(self, message: Message) -> None:
        """Send ``message``; OSError once the websocket is closed."""
        assert self.ws is not None
        self.ws.send(message)

    def close(self) -> None:
        """Send the close, if the websocket is still open."""
        if self.ws is not None and self.ws.open:
            self.ws.close()


def install(eio_server: Any, rate: float, deflate: bool) -> None:
    """Make ``eio_server`` (a python-engineio Server in threading mode) serve
    :class:`InlineWebSocketWSGI` websockets.

    :param rate: bytes per second one websocket may send on average; one message of the
                 size limit may always come at once.
    :param deflate: grant permessage-deflate to a client that offers it.
    """
    endpoint = type("InlineWebSocketWSGI", (InlineWebSocketWSGI,), {
        "rate": float(rate), "deflate": bool(deflate), "max_message_size": int(eio_server.max_http_buffer_size),
        "read_timeout": float(eio_server.ping_interval + eio_server.ping_timeout)})
    eio_server._async = {**eio_server._async, "websocket": endpoint}
