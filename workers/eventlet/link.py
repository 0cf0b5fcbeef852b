"""The worker's end of the channel, under eventlet: the link and the listener it feeds.

:class:`MasterLink` is the green link (:mod:`workers.green_link`, which reads the channel
in one green thread and hands each message to the :class:`~workers.inbox.Inbox`) with
eventlet's primitives. Hand-offs feed the :class:`ChannelListener`, an object
``eventlet.wsgi.server`` accepts from as if it were a listening socket; relay deliveries
go to a callback; end-of-file (the master is gone) ends the process at once, so a worker
never outlives its master.
"""
from __future__ import annotations

import errno
import socket

import eventlet
import eventlet.hubs
import eventlet.queue
import eventlet.semaphore

from ..green_link import GreenHub, GreenMasterLink
from ..inbox import Client

PREFACE_ATTRIBUTE = "sticky_preface"
"""The attribute of a resumed client socket that holds the bytes to serve first."""


class ChannelListener:
    """A stand-in for a listening socket whose ``accept()`` returns handed-off clients.

    It has no ``do_handshake`` on purpose: eventlet would take it for TLS.
    """

    def __init__(self, address: tuple[str, int] | str, family: int) -> None:
        self.family = family
        self._address = address
        self._queue: eventlet.queue.LightQueue = eventlet.queue.LightQueue()
        self._stopped = False
        self.closed = False
        """No more clients are taken (those queued before are still served)."""

    def put_client(self, client: socket.socket, address: tuple[str, int], preface: bytes) -> None:
        """Queue a handed-off client with the bytes to serve first; once closed, close it."""
        if self.closed:
            client.close()
            return
        if preface:
            setattr(client, PREFACE_ATTRIBUTE, preface)
        self._queue.put((client, address))

    def waiting(self) -> int:
        """Clients handed off and not accepted by the server yet."""
        return self._queue.qsize()

    def accept(self) -> tuple[socket.socket, tuple[str, int]]:
        """The next handed-off client; raises ``OSError(ESHUTDOWN)`` once closed and empty."""
        client = None if self._stopped else self._queue.get()
        if client is None:
            self._stopped = True
            raise OSError(errno.ESHUTDOWN, "listener closed")
        return client

    def getsockname(self) -> tuple[str, int] | str:
        """The master's listening address."""
        return self._address

    def close(self) -> None:
        """Take no more clients; ``accept()`` returns those queued, then raises."""
        if self.closed:
            return
        self.closed = True
        self._queue.put(None)


EVENTLET = GreenHub(
    spawn=eventlet.spawn,
    wait_readable=lambda fd: eventlet.hubs.trampoline(fd, read=True),
    wait_writable=lambda fd: eventlet.hubs.trampoline(fd, write=True),
    lock=eventlet.semaphore.Semaphore,
)
"""Eventlet's green primitives for :class:`~workers.green_link.GreenMasterLink`."""


class MasterLink(GreenMasterLink):
    """The channel to the master, driven by one green thread.

    :param sock: the worker's end of the channel socketpair.
    :param on_client: takes a handed-off client (in the reading green thread: hand it on),
        with the bytes to serve first, if any: :meth:`ChannelListener.put_client`, or
        :class:`~workers.green_intake.GreenIntake` in front of it.
    """

    def __init__(self, sock: socket.socket, on_client: Client) -> None:
        super().__init__(sock, on_client, EVENTLET)
