"""The worker's end of the channel, under gevent: the green link with gevent's primitives.

The reading, sending and dispatching are :mod:`workers.green_link`'s (shared with the
eventlet link) and :mod:`workers.inbox`'s; only gevent's way of spawning, waiting for
the channel socket and locking is here. Import it after gevent's monkey-patching.
"""
from __future__ import annotations

import socket

import gevent
import gevent.lock
from gevent.socket import wait_read, wait_write

from ..green_link import GreenHub, GreenMasterLink
from ..inbox import Client

GEVENT = GreenHub(spawn=gevent.spawn, wait_readable=wait_read, wait_writable=wait_write,
                  lock=gevent.lock.Semaphore)
"""gevent's green primitives for :class:`~workers.green_link.GreenMasterLink`."""


class GeventMasterLink(GreenMasterLink):
    """The channel to the master, driven by one greenlet.

    :param sock: the worker's end of the channel socketpair.
    :param on_client: serves a handed-off client (in the reading greenlet: hand it on).
    """

    def __init__(self, sock: socket.socket, on_client: Client) -> None:
        super().__init__(sock, on_client, GEVENT)
