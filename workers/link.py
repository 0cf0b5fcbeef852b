"""The worker's end of the channel, under eventlet: hand-offs in, messages both ways.

:class:`MasterLink` reads the channel in one green thread. Hand-offs feed the
:class:`ChannelListener`, an object ``eventlet.wsgi.server`` accepts from as if it were
a listening socket; relay deliveries go to a callback; end-of-file (the master is gone)
ends the process at once, so a worker never outlives its master.
"""
from __future__ import annotations

import errno
import logging
import os
import socket
import time
from typing import Callable

import eventlet
import eventlet.hubs
import eventlet.queue
import eventlet.semaphore
from eventlet.green import socket as green_socket

from protocol import frames
from protocol.frames import Kind

log = logging.getLogger("sticky_cluster.worker")

PREFACE_ATTRIBUTE = "sticky_preface"
"""The attribute of a resumed client socket that holds the bytes to serve first."""


class ChannelListener:
    """A stand-in for a listening socket whose ``accept()`` returns handed-off clients.

    It has no ``do_handshake`` on purpose: eventlet would take it for TLS.
    """

    def __init__(self, address: tuple[str, int] | str, family: int) -> None:
        self.family = family
        self._address = address
        self._queue: eventlet.queue.LightQueue = eventlet.queue.LightQueue()
        self._last_put = time.monotonic()
        self._stopped = False
        self.closed = False
        """No more clients are taken (those queued before are still served)."""

    def put(self, client: tuple[socket.socket, tuple[str, int]]) -> None:
        """Queue a handed-off client."""
        self._last_put = time.monotonic()
        self._queue.put(client)

    def waiting(self) -> int:
        """Clients handed off and not accepted by the server yet."""
        return self._queue.qsize()

    def idle_for(self) -> float:
        """Seconds since the last client was handed off."""
        return time.monotonic() - self._last_put

    def accept(self) -> tuple[socket.socket, tuple[str, int]]:
        """The next handed-off client; raises ``OSError(ESHUTDOWN)`` once closed and empty."""
        client = None if self._stopped else self._queue.get()
        if client is None:
            self._stopped = True
            raise OSError(errno.ESHUTDOWN, "listener closed")
        return client

    def getsockname(self) -> tuple[str, int] | str:
        """The master's listening address."""
        return self._address

    def close(self) -> None:
        """Take no more clients; ``accept()`` returns those queued, then raises."""
        if self.closed:
            return
        self.closed = True
        self._queue.put(None)


class MasterLink:
    """The channel to the master, driven by one green thread.

    :param sock: the worker's end of the channel socketpair.
    :param listener: where hand-offs go.
    """

    def __init__(self, sock: socket.socket, listener: ChannelListener) -> None:
        sock.setblocking(False)
        self._sock = sock
        self._listener = listener
        self._send_lock = eventlet.semaphore.Semaphore()
        self.on_deliver: Callable[[bytes], None] | None = None
        self.on_drain: Callable[[], None] | None = None

    def start(self) -> None:
        """Start reading the channel."""
        eventlet.spawn(self._read_forever)

    def send(self, kind: Kind, payload: bytes = b"", fd: int | None = None) -> None:
        """Send one message to the master, waiting (green) while the channel is full.

        ``fd`` rides with the first packet (a message that carries one fits in one).
        A message over :data:`protocol.frames.MAX_MESSAGE` is dropped with an error line:
        the master would take it for garbage and kill this worker.
        """
        try:
            packets = frames.packets(kind, payload)
        except frames.ProtocolError as exc:
            log.error("worker %d drops a message: %s", os.getpid(), exc)
            if fd is not None:
                os.close(fd)
            return
        with self._send_lock:
            for packet in packets:
                while True:
                    try:
                        frames.send_packet(self._sock, packet, fd)
                        fd = None
                        break
                    except BlockingIOError:
                        eventlet.hubs.trampoline(self._sock.fileno(), write=True)
                    except OSError:
                        _master_gone()

    def hand_back(self, client: socket.socket, address: tuple[str, int], data: bytes) -> None:
        """Give ``client`` back to the master with ``data``, the bytes already read from it.

        The master passes both to the worker that owns the request's session; the
        caller closes its copy of the socket afterwards (without shutting it down).
        """
        self.send(Kind.HANDBACK, frames.resumed(address, data), client.fileno())

    def _read_forever(self) -> None:
        reassembler = frames.Reassembler()
        while True:
            try:
                packet, fd = frames.receive_packet(self._sock)
            except BlockingIOError:
                eventlet.hubs.trampoline(self._sock.fileno(), read=True)
                continue
            except OSError:
                _master_gone()
            if not packet:
                _master_gone()
            message = reassembler.feed(packet)
            if message is not None:
                self._dispatch(*message, fd)

    def _dispatch(self, kind: Kind, payload: bytes, fd: int | None) -> None:
        if kind is Kind.HANDOFF and fd is not None:
            self._take(fd, frames.decode_address(payload), b"")
        elif kind is Kind.RESUME and fd is not None:
            self._take(fd, *frames.split_resumed(payload))
        elif kind is Kind.DELIVER and self.on_deliver is not None:
            self.on_deliver(payload)
        elif kind is Kind.DRAIN and self.on_drain is not None:
            self.on_drain()
        elif fd is not None:
            os.close(fd)

    def _take(self, fd: int, address: tuple[str, int], preface: bytes) -> None:
        """Queue a handed-over client for the server, with the bytes to serve first."""
        client = green_socket.socket(fileno=fd)
        if self._listener.closed:
            client.close()
            return
        if preface:
            setattr(client, PREFACE_ATTRIBUTE, preface)
        self._listener.put((client, address))


def _master_gone() -> None:
    """The channel is closed: the master died or let us go. Leave at once."""
    log.info("master channel closed; worker %d exits", os.getpid())
    logging.shutdown()
    os._exit(0)
