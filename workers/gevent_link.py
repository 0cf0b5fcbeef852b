"""The worker's end of the channel, under gevent: one greenlet reads, any greenlet sends.

The messages go to the :class:`~workers.inbox.Inbox` callbacks; a send waits (green)
while the channel is full, one sender at a time so that fragments stay in order.
"""
from __future__ import annotations

import socket

import gevent
import gevent.lock
from gevent.socket import wait_read, wait_write

from protocol import frames
from protocol.frames import Kind

from .inbox import Client, Inbox, master_gone


class GeventMasterLink(Inbox):
    """The channel to the master, driven by one greenlet.

    :param sock: the worker's end of the channel socketpair.
    :param on_client: serves a handed-off client (in the reading greenlet: hand it on).
    """

    def __init__(self, sock: socket.socket, on_client: Client) -> None:
        super().__init__(on_client)
        sock.setblocking(False)
        self._sock = sock
        self._fd = sock.fileno()
        self._send_lock = gevent.lock.Semaphore()

    def start(self) -> None:
        """Start reading the channel."""
        gevent.spawn(self._read_forever)

    def send(self, kind: Kind, payload: bytes = b"", fd: int | None = None) -> None:
        """Send one message to the master, waiting (green) while the channel is full.

        ``fd`` rides with the first packet (a message that carries one fits in one).
        """
        with self._send_lock:
            for packet in frames.packets(kind, payload):
                while True:
                    try:
                        frames.send_packet(self._sock, packet, fd)
                        fd = None
                        break
                    except BlockingIOError:
                        wait_write(self._fd)
                    except OSError:
                        master_gone()

    def hand_back(self, client: socket.socket, address: tuple[str, int], data: bytes) -> None:
        """Give ``client`` back to the master with ``data``, the bytes already read from it.

        The master passes both to the worker that owns the request's session; the
        caller closes its copy of the socket afterwards (without shutting it down).
        """
        self.send(Kind.HANDBACK, frames.resumed(address, data), client.fileno())

    def _read_forever(self) -> None:
        while True:
            try:
                packet, fd = frames.receive_packet(self._sock)
            except BlockingIOError:
                wait_read(self._fd)
                continue
            except OSError:
                master_gone()
            self.feed(packet, fd)
