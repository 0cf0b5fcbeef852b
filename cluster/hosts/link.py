"""The forwarder's end of its channel to the master, on the forwarder's event loop.

The same protocol as a worker's channel (:mod:`cluster.protocol.frames`), driven the same
way as the asyncio worker's (:class:`cluster.protocol.loop_channel.LoopChannel`): the
master hands the forwarder client sockets (HANDOFF, RESUME) and asks it to DRAIN; the
forwarder sends READY, HEARTBEAT, HOSTS, and HANDBACK for a request that is not for
another host. When the channel ends (the master is gone) ``on_gone`` runs, once.
"""
from __future__ import annotations

import asyncio
import logging
import os
import socket
from typing import Callable

from cluster.protocol import frames
from cluster.protocol.frames import Kind
from cluster.protocol.loop_channel import LoopChannel

log = logging.getLogger("sticky_cluster.hosts")

Client = Callable[[socket.socket, tuple[str, int], bytes], None]
"""Takes a handed-off client: its socket, its address, the bytes already read from it."""


class MasterLink(LoopChannel):
    """The channel to the master, driven by the running event loop.

    :param sock: the forwarder's end of the channel socketpair.
    :param on_client: takes each handed-off client (on the loop).
    :param on_drain: called on DRAIN.
    :param on_gone: called once when the channel is closed or broken.
    """

    def __init__(self, sock: socket.socket, on_client: Client, on_drain: Callable[[], None],
                 on_gone: Callable[[], None]) -> None:
        super().__init__(sock, asyncio.get_running_loop())
        self._on_client = on_client
        self._on_drain = on_drain
        self._on_gone = on_gone
        self._gone = False
        self._reassembler = frames.Reassembler()

    def send(self, kind: Kind, payload: bytes = b"", fd: int | None = None) -> None:
        """Send one message now, or queue it; ``fd`` (closed here once sent) rides along.
        Once the master is gone, nothing is sent (``fd`` is closed)."""
        if self._gone:
            if fd is not None:
                os.close(fd)
            return
        self.send_packets(frames.packets(kind, payload), fd)

    def hand_back(self, sock: socket.socket, address: tuple[str, int], data: bytes) -> None:
        """Give the client ``sock`` back to the master with ``data``, the bytes read from it
        and not served. A copy of the socket is sent: the caller closes its own (no shutdown)."""
        self.send(Kind.HANDBACK, frames.resumed(address, data), os.dup(sock.fileno()))

    def packet_received(self, packet: bytes, fd: int | None) -> None:
        if not packet:
            self.channel_broken()
            return
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
            log.error("forwarder: a %s without a socket (out of file descriptors?)", kind.name)
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

    def channel_broken(self) -> None:
        if self._gone:
            return
        self._gone = True
        self.stop()
        self._on_gone()
