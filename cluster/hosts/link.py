"""The forwarder's end of its channel to the master, on the forwarder's event loop.

The same protocol as a worker's channel (:mod:`cluster.protocol.frames`): the master hands
the forwarder client sockets (HANDOFF, RESUME) and asks it to DRAIN; the forwarder sends
READY, HEARTBEAT, HOSTS, and HANDBACK for a request that is not for another host. Sending
never waits: when the channel is full, packets wait in order in an outbox the loop's
writer callback empties. When the channel ends (the master is gone) ``on_gone`` runs.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import os
import socket
from typing import Callable

from cluster.protocol import frames
from cluster.protocol.frames import Kind

log = logging.getLogger("sticky_cluster.hosts")

Client = Callable[[socket.socket, tuple[str, int], bytes], None]
"""Takes a handed-off client: its socket, its address, the bytes already read from it."""

READ_BATCH = 64
"""Most packets read in one reader callback."""


class MasterLink:
    """The channel to the master, driven by the event loop.

    :param sock: the forwarder's end of the channel socketpair.
    :param on_client: takes each handed-off client (on the loop).
    :param on_drain: called on DRAIN.
    :param on_gone: called once when the channel is closed or broken.
    """

    def __init__(self, sock: socket.socket, on_client: Client, on_drain: Callable[[], None],
                 on_gone: Callable[[], None]) -> None:
        sock.setblocking(False)
        self._sock = sock
        self._fd = sock.fileno()
        self._on_client = on_client
        self._on_drain = on_drain
        self._on_gone = on_gone
        self._gone = False
        self._reassembler = frames.Reassembler()
        self._outbox: collections.deque[tuple[bytes, int | None]] = collections.deque()
        self._waiting = False
        self._loop = asyncio.get_running_loop()

    def start(self) -> None:
        """Start reading the channel."""
        self._loop.add_reader(self._fd, self._on_readable)

    def send(self, kind: Kind, payload: bytes = b"", fd: int | None = None) -> None:
        """Send one message now, or queue it; ``fd`` (closed here once sent) rides along."""
        if self._gone:
            if fd is not None:
                os.close(fd)
            return
        packets: list[tuple[bytes, int | None]] = [(packet, None)
                                                   for packet in frames.packets(kind, payload)]
        packets[0] = (packets[0][0], fd)
        self._outbox.extend(packets)
        if len(self._outbox) == len(packets):
            self._flush()

    def hand_back(self, sock: socket.socket, address: tuple[str, int], data: bytes) -> None:
        """Give the client ``sock`` back to the master with ``data``, the bytes read from it
        and not served. A copy of the socket is sent: the caller closes its own (no shutdown)."""
        self.send(Kind.HANDBACK, frames.resumed(address, data), os.dup(sock.fileno()))

    def _flush(self) -> None:
        while self._outbox:
            packet, fd = self._outbox[0]
            try:
                frames.send_packet(self._sock, packet, fd)
            except BlockingIOError:
                if not self._waiting:
                    self._waiting = True
                    self._loop.add_writer(self._fd, self._flush)
                return
            except OSError:
                self._lost()
                return
            self._outbox.popleft()
            if fd is not None:
                os.close(fd)
        if self._waiting:
            self._waiting = False
            self._loop.remove_writer(self._fd)

    def _on_readable(self) -> None:
        for _ in range(READ_BATCH):
            try:
                packet, fd = frames.receive_packet(self._sock)
            except BlockingIOError:
                return
            except OSError:
                self._lost()
                return
            if not packet:
                self._lost()
                return
            self._take(packet, fd)

    def _take(self, packet: bytes, fd: int | None) -> None:
        try:
            message = self._reassembler.feed(packet)
        except frames.ProtocolError as exc:
            log.error("forwarder: a bad message from the master: %s", exc)
            message = None
        if message is None:
            if fd is not None:
                os.close(fd)
            return
        kind, payload = message
        if kind is Kind.DRAIN:
            self._on_drain()
        if kind is not Kind.HANDOFF and kind is not Kind.RESUME:
            if fd is not None:
                os.close(fd)
            return
        if fd is None:
            log.error("forwarder: a %s without a socket", kind.name)
            return
        try:
            if kind is Kind.HANDOFF:
                address, data = frames.decode_address(payload), b""
            else:
                address, data = frames.split_resumed(payload)
            client = socket.socket(fileno=fd)
        except (ValueError, UnicodeDecodeError, OSError) as exc:
            log.error("forwarder: a %s that cannot be read: %s", kind.name, exc)
            os.close(fd)
            return
        self._on_client(client, address, data)

    def _lost(self) -> None:
        if self._gone:
            return
        self._gone = True
        self._loop.remove_reader(self._fd)
        if self._waiting:
            self._loop.remove_writer(self._fd)
        while self._outbox:
            _packet, fd = self._outbox.popleft()
            if fd is not None:
                os.close(fd)
        self._on_gone()
