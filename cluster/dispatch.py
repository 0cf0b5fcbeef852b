"""The master's hot path: accept a client, choose its worker, hand the socket over.

After the hand-off the master closes its copy of the socket and never sees the
connection again.
"""
from __future__ import annotations

import errno
import logging
import os
import socket

from . import channel, routing
from .supervisor import Supervisor

log = logging.getLogger("sticky_cluster.master")

ACCEPT_BATCH = 64
"""Connections accepted per readiness event before the loop looks at other work."""

OUT_OF_FILES = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


class Dispatcher:
    """Hands accepted connections to workers by a consistent hash of the client IP.

    :param supervisor: the table of workers to route to.
    """

    def __init__(self, supervisor: Supervisor) -> None:
        self._supervisor = supervisor
        self._unkeyed = 0
        self.accepted = 0
        """Connections accepted."""
        self.handed_off = 0
        """Connections handed to a worker."""
        self.rerouted = 0
        """Connections that went to another slot because their slot's channel was full."""
        self.dropped = 0
        """Connections closed because no worker could take them."""

    def accept_from(self, listener: socket.socket) -> bool:
        """Accept and hand off up to a batch of clients; False when out of file descriptors."""
        for _ in range(ACCEPT_BATCH):
            try:
                fd, address = listener._accept()  # type: ignore[attr-defined]  # fd, no socket object
            except (BlockingIOError, InterruptedError):
                return True
            except OSError as exc:
                if exc.errno in OUT_OF_FILES:
                    return False
                continue  # the client went away before accept (ECONNABORTED …)
            self.accepted += 1
            self.hand_off(fd, address)
        return True

    def hand_off(self, fd: int, address: tuple[str, int] | str) -> None:
        """Give the client socket ``fd`` to the worker its address routes to."""
        if isinstance(address, tuple):
            host, port = address[0], address[1]
            key = host.encode()
        else:  # a Unix-socket client has no address: spread them
            host, port = "", 0
            self._unkeyed += 1
            key = self._unkeyed.to_bytes(8, "little")
        packet = channel.handoff_packet((host, port))
        serving = self._supervisor.serving
        slot = routing.best(key, serving)
        if slot is not None and serving[slot].send(packet, fd):
            self.handed_off += 1
            return
        for slot in routing.ranked(key, serving)[1:]:
            if serving[slot].send(packet, fd):
                self.handed_off += 1
                self.rerouted += 1
                return
        os.close(fd)
        self.dropped += 1
