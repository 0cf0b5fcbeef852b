"""The worker's end of the channel for a green-thread runtime (eventlet, gevent).

One green thread reads the channel and hands each packet to the
:class:`~workers.inbox.Inbox`; any green thread sends, one at a time (so that a
message's fragments stay in order), waiting while the channel is full. The loop is the
same under every green runtime; only how to start a green thread, how to wait for the
socket and which lock to take differ: the runtime gives them as a :class:`GreenHub`
(``workers.eventlet.link.EVENTLET``, ``workers.gevent.link.GEVENT``). This module imports no
runtime.
"""
from __future__ import annotations

import socket
from typing import Any, Callable, ContextManager, NamedTuple

from cluster.protocol import frames
from cluster.protocol.frames import Kind

from .inbox import Client, Inbox, master_gone, outgoing_packets, reader_failed


class GreenHub(NamedTuple):
    """How a green runtime starts a green thread, waits for a socket, and locks."""

    spawn: Callable[[Callable[[], None]], Any]
    """Runs a function in a new green thread."""
    wait_readable: Callable[[int], None]
    """Waits (green) until the fd can be read."""
    wait_writable: Callable[[int], None]
    """Waits (green) until the fd can be written."""
    lock: Callable[[], ContextManager[Any]]
    """Makes a green lock."""


class GreenMasterLink(Inbox):
    """The channel to the master, driven by one green thread of ``hub``'s runtime.

    :param sock: the worker's end of the channel socketpair.
    :param on_client: serves a handed-off client (in the reading green thread: hand it on).
    :param hub: the runtime's green primitives.
    """

    def __init__(self, sock: socket.socket, on_client: Client, hub: GreenHub) -> None:
        super().__init__(on_client)
        sock.setblocking(False)
        self._sock = sock
        self._reader = frames.PacketReader(sock)
        self._fd = sock.fileno()
        self._hub = hub
        self._send_lock = hub.lock()

    def start(self) -> None:
        """Start reading the channel."""
        self._hub.spawn(self._read_forever)

    def send(self, kind: Kind, payload: bytes = b"", fd: int | None = None) -> None:
        """Send one message to the master, waiting (green) while the channel is full.

        ``fd`` rides with the first packet (a message that carries one fits in one).
        A message over :data:`cluster.protocol.frames.MAX_MESSAGE` is dropped with an error line:
        the master would take it for garbage and kill this worker.
        """
        packets = outgoing_packets(kind, payload, fd)
        if packets is None:
            return
        with self._send_lock:
            for packet in packets:
                while True:
                    try:
                        frames.send_packet(self._sock, packet, fd)
                        fd = None
                        break
                    except BlockingIOError:
                        self._hub.wait_writable(self._fd)
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
                packet, fd = self._reader.receive()
            except BlockingIOError:
                self._hub.wait_readable(self._fd)
                continue
            except OSError:
                master_gone()
            try:
                self.feed(packet, fd)
            except Exception:  # noqa: BLE001 - never linger half-alive: exit, be replaced
                reader_failed()
