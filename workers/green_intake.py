"""What a green-thread worker (eventlet, gevent) does with a client handed over while it
already serves ``--worker-connections``: answer it ``503``, as uvicorn's
``limit_concurrency`` does, rather than let it wait for a free green thread.

A connection left waiting holds a file descriptor and is served however late: in a storm
of reconnects the clients that gave up (and came back as new connections) piled up in
one worker to its file-descriptor limit. The heartbeat has told the master that the
worker is full, so it places new clients elsewhere; what still arrives (a request for a
session the worker holds, a hand-off sent before the heartbeat) is refused here.

A refusal reads the request head first (within :data:`~workers.limits.REFUSAL_WAIT`
seconds), so that the client reads the answer instead of a reset; at most as many
refusals as ``--worker-connections`` run at once, past that a connection is closed at
once. The warning is written once per burst (:class:`~cluster.protocol.bursts.BurstLog`).
This module imports no runtime: the caller passes its own timeout and pool.
"""
from __future__ import annotations

import logging
import os
import socket
from typing import Any, Callable, ContextManager

from cluster.protocol.bursts import BurstLog

from .limits import HEAD_LIMIT, REFUSAL_WAIT, RESPONSE_503

log = logging.getLogger("sticky_cluster.worker")

Serve = Callable[[socket.socket, Any, bytes], None]
"""Serves a handed-over client: ``(socket, address, preface)``."""


def refuse(sock: socket.socket, preface: bytes,
           timeout: Callable[..., ContextManager[Any]]) -> None:
    """Answer ``sock`` ``503`` once its request head is in (within
    :data:`~workers.limits.REFUSAL_WAIT` seconds, at most :data:`~workers.limits.HEAD_LIMIT`
    bytes), then close it. ``preface``: bytes already read from it; ``timeout``: the
    runtime's green ``Timeout`` class (``Timeout(seconds, False)`` ends its block silently)."""
    head = preface
    try:
        with timeout(REFUSAL_WAIT, False):
            while b"\r\n\r\n" not in head and b"\n\n" not in head and len(head) < HEAD_LIMIT:
                chunk = sock.recv(16384)
                if not chunk:
                    return
                head += chunk
            sock.sendall(RESPONSE_503)
    except OSError:
        pass
    finally:
        sock.close()


class GreenIntake:
    """Serves each handed-over client while there is room, answers ``503`` past it.

    :param serve: serves a client (queues it for the server, or spawns its handler).
    :param has_room: whether one more client fits under ``--worker-connections``.
    :param refusals: a green pool of ``limit`` threads that run :func:`refuse`: its
        ``spawn``, and whether it has a free thread.
    :param timeout: the runtime's green ``Timeout`` class, for :func:`refuse`.
    :param limit: ``--worker-connections``, for the log line.
    """

    def __init__(self, serve: Serve, has_room: Callable[[], bool],
                 refusals: tuple[Callable[..., Any], Callable[[], bool]],
                 timeout: Callable[..., ContextManager[Any]], limit: int) -> None:
        self._serve = serve
        self._has_room = has_room
        self._spawn_refusal, self._refusal_room = refusals
        self._timeout = timeout
        self.refused = BurstLog(log, logging.WARNING,
                                f"worker {os.getpid()} is full (--worker-connections {limit}): "
                                "a connection gets a 503")
        """Connections refused (``count``)."""

    def take(self, client: socket.socket, address: Any, preface: bytes) -> None:
        """Serve ``client`` (``preface``: the bytes read from it before), or refuse it."""
        if self._has_room():
            self._serve(client, address, preface)
            return
        self.refused.note()
        if self._refusal_room():
            self._spawn_refusal(refuse, client, preface, self._timeout)
        else:
            client.close()
