"""What a worker does with each message from the master, whatever its runtime.

A runtime's link reads channel packets its own way (a green thread, an event loop's
reader) and hands each whole message to :meth:`Inbox.dispatch`, which calls the
runtime's callbacks. End-of-file on the channel means the master is gone, and
:func:`master_gone` ends the process at once: a worker never outlives its master. A
reader that fails ends it too (:func:`reader_failed`): a worker that heartbeats but
takes no client would be a black hole; the master replaces one that exits.
"""
from __future__ import annotations

import logging
import os
import socket
import time
from typing import Callable

from cluster.protocol import frames
from cluster.protocol.bursts import BurstLog
from cluster.protocol.frames import Kind

log = logging.getLogger("sticky_cluster.worker")

READER_FAILED = 1
"""Exit code of a worker whose channel reader failed."""

Client = Callable[[socket.socket, tuple[str, int], bytes], None]
"""Takes a handed-off client socket, the client's address and the bytes to serve first
(those another worker read before it handed the connection back; none for a hand-off)."""


class Inbox:
    """The worker's callbacks for the master's messages.

    :param on_client: serves a handed-off client (its socket, its real address, the bytes
                      to serve first).
    """

    def __init__(self, on_client: Client) -> None:
        self.on_client = on_client
        self.on_deliver: Callable[[bytes], None] | None = None
        """Takes a relay delivery (set by the relay manager)."""
        self.on_drain: Callable[[], None] | None = None
        """Called once the master asks the worker to drain."""
        self.closed = False
        """No more clients are taken: hand-offs that still arrive are closed."""
        self.last_client = time.monotonic()
        self._reassembler = frames.Reassembler()
        self.lost = BurstLog(log, logging.WARNING,
                             "worker %d: a client's socket did not arrive with its hand-off "
                             "(out of file descriptors? raise ulimit -n): the client is lost")
        """Hand-offs that came without their socket (``count``)."""

    def idle_for(self) -> float:
        """Seconds since the last client was handed off."""
        return time.monotonic() - self.last_client

    def feed(self, packet: bytes, fd: int | None) -> None:
        """Take one channel packet (and the fd it carries); act on the message it completes."""
        if not packet:
            master_gone()
        message = self._reassembler.feed(packet)
        if message is None:
            if fd is not None:
                os.close(fd)
            return
        kind, payload = message
        if (kind is Kind.HANDOFF or kind is Kind.RESUME) and fd is None:
            self.lost.note(os.getpid())  # the kernel drops the fd when we have no room for it
        elif kind is Kind.HANDOFF:
            self._take(fd, frames.decode_address(payload), b"")
        elif kind is Kind.RESUME:
            self._take(fd, *frames.split_resumed(payload))
        elif kind is Kind.DELIVER and self.on_deliver is not None:
            self.on_deliver(payload)
        elif kind is Kind.DRAIN and self.on_drain is not None:
            self.on_drain()
        elif fd is not None:
            os.close(fd)

    def _take(self, fd: int, address: tuple[str, int], preface: bytes) -> None:
        client = socket.socket(fileno=fd)
        if self.closed:
            client.close()
        else:
            no_delay(client)
            self.last_client = time.monotonic()
            self.on_client(client, address, preface)


def no_delay(client: socket.socket) -> None:
    """Send what the server writes at once (TCP_NODELAY), as asyncio does for its transports.

    gevent's pywsgi writes a response's head and body in two sends; with Nagle's algorithm
    the second waits for the client's delayed ACK: 40 ms per request on a kept-alive
    connection. A client socket that is not TCP (a unix socket) is left as it is.
    """
    if client.family in (socket.AF_INET, socket.AF_INET6):
        try:
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:  # the client is gone already: serving it will say so
            pass


def master_gone() -> None:
    """The channel is closed: the master died or let us go. Leave at once."""
    log.info("master channel closed; worker %d exits", os.getpid())
    logging.shutdown()
    os._exit(0)


def reader_failed() -> None:
    """The channel's reader raised: say why, then leave (non-zero) to be replaced."""
    log.critical("worker %d: its channel reader failed; it exits to be replaced",
                 os.getpid(), exc_info=True)
    logging.shutdown()
    os._exit(READER_FAILED)


def outgoing_packets(kind: Kind, payload: bytes, fd: int | None) -> list[bytes] | None:
    """The packets of one message to the master; None for a message over
    :data:`cluster.protocol.frames.MAX_MESSAGE`, which is dropped with an error line and its
    ``fd`` closed: the master would take it for garbage and kill this worker."""
    try:
        return frames.packets(kind, payload)
    except frames.ProtocolError as exc:
        log.error("worker %d drops a message: %s", os.getpid(), exc)
        if fd is not None:
            os.close(fd)
        return None
