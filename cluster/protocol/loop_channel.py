"""One end of a master channel driven by an asyncio event loop: the shared part of the
asyncio worker's link (:mod:`workers.asyncio.link`) and the forwarder's
(:mod:`cluster.hosts.link`).

The channel is read by the loop's reader callback (``loop.add_reader``), never by a thread,
:data:`READ_BATCH` packets at a time, each passed to :meth:`LoopChannel.packet_received`.
Sending never waits: when the channel is full, packets wait in order in an outbox that the
loop's writer callback empties; an fd riding with a packet is closed once it is sent. A
broken channel calls :meth:`LoopChannel.channel_broken`. Standard library only.
"""
from __future__ import annotations

import asyncio
import collections
import os
import socket

from . import frames

READ_BATCH = 64
"""Most packets read in one reader callback, so that the loop serves clients meanwhile."""


class LoopChannel:
    """The loop's reading and writing of a channel socket; subclasses say what a packet
    means (:meth:`packet_received`) and what a broken channel means (:meth:`channel_broken`).

    :param sock: this end of the channel socketpair (made non-blocking here).
    :param loop: the event loop that drives it.
    """

    def __init__(self, sock: socket.socket, loop: asyncio.AbstractEventLoop) -> None:
        sock.setblocking(False)
        self._sock = sock
        self._reader = frames.PacketReader(sock)
        self._fd = sock.fileno()
        self._loop = loop
        self._outbox: collections.deque[tuple[bytes, int | None]] = collections.deque()
        self._waiting = False  # for the channel to take more (the writer callback is on)

    def start(self) -> None:
        """Start reading the channel."""
        self._loop.add_reader(self._fd, self._on_readable)

    def send_packets(self, packets: list[bytes], fd: int | None = None) -> None:
        """Send one message's packets now, or queue them behind those still waiting;
        ``fd`` rides with the first and is closed here once sent."""
        queued: list[tuple[bytes, int | None]] = [(packet, None) for packet in packets]
        queued[0] = (queued[0][0], fd)
        self._outbox.extend(queued)
        if len(self._outbox) == len(queued):
            self._flush()

    def stop(self) -> None:
        """Stop reading and writing; close the fds of the packets still queued."""
        self._loop.remove_reader(self._fd)
        if self._waiting:
            self._waiting = False
            self._loop.remove_writer(self._fd)
        while self._outbox:
            _packet, fd = self._outbox.popleft()
            if fd is not None:
                os.close(fd)

    def packet_received(self, packet: bytes, fd: int | None) -> None:
        """Take one packet (``b""``: the other end closed) and the fd it carries."""
        raise NotImplementedError

    def channel_broken(self) -> None:
        """The channel failed to send or receive: the other end is gone."""
        raise NotImplementedError

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
                self.channel_broken()
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
                packet, fd = self._reader.receive()
            except BlockingIOError:
                return
            except OSError:
                self.channel_broken()
                return
            self.packet_received(packet, fd)
            if not packet:
                return
