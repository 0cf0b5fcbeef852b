"""The worker's end of the channel, on an asyncio event loop.

The channel is read by the loop's reader callback (``loop.add_reader``), never by a
thread: hand-offs go straight to the runtime's ``on_client`` on the loop.
:meth:`AsyncMasterLink.send` never waits: when the channel is full, packets wait in
order in an outbox that the loop's writer callback empties. A packet that carries an
fd (a hand-back) carries a copy, closed once it is sent.
"""
from __future__ import annotations

import asyncio
import collections
import os
import socket

from cluster.protocol import frames
from cluster.protocol.frames import Kind

from ..inbox import Client, Inbox, master_gone, outgoing_packets, reader_failed

READ_BATCH = 64
"""Most packets read in one reader callback, so that the loop serves clients meanwhile."""


class AsyncMasterLink(Inbox):
    """The channel to the master, driven by the event loop; the master's messages go to
    the :class:`~workers.inbox.Inbox` callbacks.

    :param sock: the worker's end of the channel socketpair.
    :param on_client: serves a handed-off client (on the loop).
    :param loop: the worker's event loop.
    """

    def __init__(self, sock: socket.socket, on_client: Client,
                 loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(on_client)
        sock.setblocking(False)
        self._sock = sock
        self._fd = sock.fileno()
        self._loop = loop
        self._outbox: collections.deque[tuple[bytes, int | None]] = collections.deque()
        self._waiting = False  # for the channel to take more (the writer callback is on)

    def start(self) -> None:
        """Start reading the channel."""
        self._loop.add_reader(self._fd, self._on_readable)

    def send(self, kind: Kind, payload: bytes = b"", fd: int | None = None) -> None:
        """Send one message to the master now, or queue it behind those still waiting.

        ``fd`` rides with the first packet (a message that carries one fits in one); it
        is closed here once sent. A message over :data:`cluster.protocol.frames.MAX_MESSAGE` is
        dropped with an error line (:func:`~workers.inbox.outgoing_packets`).
        """
        whole = outgoing_packets(kind, payload, fd)
        if whole is None:
            return
        packets: list[tuple[bytes, int | None]] = [(packet, None) for packet in whole]
        packets[0] = (packets[0][0], fd)
        self._outbox.extend(packets)
        if len(self._outbox) == len(packets):
            self._flush()

    def hand_back(self, fd: int, address: tuple[str, int], data: bytes) -> None:
        """Give the client socket ``fd`` back to the master with ``data``, the bytes already read.

        A copy of ``fd`` is sent: the caller closes its own at once (without a shutdown).
        """
        self.send(Kind.HANDBACK, frames.resumed(address, data), os.dup(fd))

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
                master_gone()
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
                master_gone()
            try:
                self.feed(packet, fd)
            except Exception:  # noqa: BLE001 - never linger half-alive: exit, be replaced
                reader_failed()
