"""The worker's end of the channel, on an asyncio event loop.

The channel is read by the loop's reader callback (``loop.add_reader``), never by a
thread: hand-offs go straight to the runtime's ``on_client`` on the loop.
:meth:`AsyncMasterLink.send` never waits: when the channel is full, packets wait in
order in an outbox that the loop's writer callback empties.
"""
from __future__ import annotations

import asyncio
import collections
import socket

from cluster import channel
from cluster.channel import Kind

from .inbox import Client, Inbox, master_gone

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
        self._outbox: collections.deque[bytes] = collections.deque()

    def start(self) -> None:
        """Start reading the channel."""
        self._loop.add_reader(self._fd, self._on_readable)

    def send(self, kind: Kind, payload: bytes = b"") -> None:
        """Send one message to the master now, or queue it behind those still waiting."""
        packets = channel.frames(kind, payload)
        if not self._outbox:
            for index, packet in enumerate(packets):
                try:
                    channel.send_packet(self._sock, packet)
                except BlockingIOError:
                    packets = packets[index:]
                    self._loop.add_writer(self._fd, self._flush)
                    break
                except OSError:
                    master_gone()
            else:
                return
        self._outbox.extend(packets)

    def _flush(self) -> None:
        while self._outbox:
            try:
                channel.send_packet(self._sock, self._outbox[0])
            except BlockingIOError:
                return
            except OSError:
                master_gone()
            self._outbox.popleft()
        self._loop.remove_writer(self._fd)

    def _on_readable(self) -> None:
        for _ in range(READ_BATCH):
            try:
                packet, fd = channel.receive_packet(self._sock)
            except BlockingIOError:
                return
            except OSError:
                master_gone()
            self.feed(packet, fd)
