"""The worker's end of the channel, under the threading runtime: one reader thread.

The twin of :mod:`workers.green_link` for real threads: a daemon thread reads the
channel (a blocking socket) and hands each packet to the :class:`~workers.inbox.Inbox`;
any thread sends, one message at a time under a lock (so that a message's fragments
stay in order), blocking while the channel is full. End-of-file (the master is gone)
ends the process at once, as in every runtime.
"""
from __future__ import annotations

import socket
import threading

from cluster.protocol import frames
from cluster.protocol.frames import Kind

from ..inbox import Client, Inbox, master_gone, outgoing_packets


class ThreadMasterLink(Inbox):
    """The channel to the master, read by one daemon thread.

    :param sock: the worker's end of the channel socketpair.
    :param on_client: serves a handed-off client (called in the reading thread: hand it on).
    """

    def __init__(self, sock: socket.socket, on_client: Client) -> None:
        super().__init__(on_client)
        sock.setblocking(True)
        self._sock = sock
        self._reader = frames.PacketReader(sock)
        self._send_lock = threading.Lock()

    def start(self) -> None:
        """Start reading the channel."""
        threading.Thread(target=self._read_forever, name="sticky-channel", daemon=True).start()

    def send(self, kind: Kind, payload: bytes = b"", fd: int | None = None) -> None:
        """Send one message to the master, blocking while the channel is full.

        ``fd`` rides with the first packet. A message over
        :data:`cluster.protocol.frames.MAX_MESSAGE` is dropped with an error line.
        """
        packets = outgoing_packets(kind, payload, fd)
        if packets is None:
            return
        with self._send_lock:
            try:
                for packet in packets:
                    frames.send_packet(self._sock, packet, fd)
                    fd = None
            except OSError:
                master_gone()

    def hand_back(self, client: socket.socket, address: tuple[str, int], data: bytes) -> None:
        """Give ``client`` back to the master with ``data``, the bytes already read from it.

        The caller closes its copy of the socket afterwards (without shutting it down).
        """
        self.send(Kind.HANDBACK, frames.resumed(address, data), client.fileno())

    def _read_forever(self) -> None:
        while True:
            try:
                packet, fd = self._reader.receive()
            except OSError:
                master_gone()
            self.feed(packet, fd)
