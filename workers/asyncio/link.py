"""The worker's end of the channel, on an asyncio event loop.

The channel is read by the loop's reader callback (``loop.add_reader``), never by a
thread: hand-offs go straight to the runtime's ``on_client`` on the loop.
:meth:`AsyncMasterLink.send` never waits: when the channel is full, packets wait in
order in an outbox that the loop's writer callback empties
(:class:`cluster.protocol.loop_channel.LoopChannel`, shared with the forwarder). A packet
that carries an fd (a hand-back) carries a copy, closed once it is sent.
"""
from __future__ import annotations

import asyncio
import os
import socket

from cluster.protocol import frames
from cluster.protocol.frames import Kind
from cluster.protocol.loop_channel import LoopChannel

from ..inbox import Client, Inbox, master_gone, outgoing_packets, reader_failed


class AsyncMasterLink(Inbox, LoopChannel):
    """The channel to the master, driven by the event loop; the master's messages go to
    the :class:`~workers.inbox.Inbox` callbacks.

    :param sock: the worker's end of the channel socketpair.
    :param on_client: serves a handed-off client (on the loop).
    :param loop: the worker's event loop.
    """

    def __init__(self, sock: socket.socket, on_client: Client,
                 loop: asyncio.AbstractEventLoop) -> None:
        Inbox.__init__(self, on_client)
        LoopChannel.__init__(self, sock, loop)

    def send(self, kind: Kind, payload: bytes = b"", fd: int | None = None) -> None:
        """Send one message to the master now, or queue it behind those still waiting.

        ``fd`` rides with the first packet (a message that carries one fits in one); it
        is closed here once sent. A message over :data:`cluster.protocol.frames.MAX_MESSAGE` is
        dropped with an error line (:func:`~workers.inbox.outgoing_packets`).
        """
        whole = outgoing_packets(kind, payload, fd)
        if whole is not None:
            self.send_packets(whole, fd)

    def hand_back(self, fd: int, address: tuple[str, int], data: bytes) -> None:
        """Give the client socket ``fd`` back to the master with ``data``, the bytes already read.

        A copy of ``fd`` is sent: the caller closes its own at once (without a shutdown).
        """
        self.send(Kind.HANDBACK, frames.resumed(address, data), os.dup(fd))

    def packet_received(self, packet: bytes, fd: int | None) -> None:
        try:
            self.feed(packet, fd)
        except Exception:  # noqa: BLE001 - never linger half-alive: exit, be replaced
            reader_failed()

    def channel_broken(self) -> None:
        master_gone()
