"""Engine.IO's pings in an eventlet worker: a hub timer each, not a green thread each.

python-engineio starts a green thread for every ping of every session
(``Socket.schedule_ping``, when the client answers the last one): it sleeps the ping interval
(25 s), sends the ping and ends. So every idle client had a green thread parked for most of
its life (its stack saved on the heap, its ``GreenThread``, event and timer), and every ping
made and switched to a new one. Here (patched on the class, in the worker process only, as
:mod:`workers.ping_patience` does) the ping is sent by a hub timer: the same packet at the
same time, with ``last_ping`` kept as python-engineio keeps it, so its ping timeout and
:mod:`workers.ping_patience` see what they saw.

The timer runs in the hub, which must not wait: sending a ping only queues it (the
session's :class:`~workers.eventlet.packet_queue.PacketQueue` never blocks a ``put``), and
its ping timeout cannot close the session there (``last_ping`` is set just before).
"""
from __future__ import annotations

import logging
import os
import time
from typing import Any

from engineio import packet
from eventlet.hubs import get_hub

log = logging.getLogger("sticky_cluster.worker")


def _send_ping(sock: Any, ping: Any) -> None:
    """The ping interval has passed: ping the client, unless its session has ended."""
    if sock.closing or sock.closed:
        return
    sock.last_ping = time.time()
    try:
        sock.send(ping)
    except Exception:  # noqa: BLE001 - a hub timer must not raise into the hub
        log.exception("worker %d: the ping of session %s failed", os.getpid(), sock.sid)


def schedule_ping(sock: Any) -> None:
    """``engineio.socket.Socket.schedule_ping`` (python-engineio's own, but for the green
    thread): ping ``sock``'s client in a ping interval, unless a ping is already due."""
    if sock.last_ping:
        sock.last_ping = None
        get_hub().schedule_call_global(sock.server.ping_interval, _send_ping, sock,
                                       packet.Packet(packet.PING))


def install() -> None:
    """Make python-engineio's sync sessions (``engineio.socket.Socket``) ping from hub timers."""
    from engineio import socket

    socket.Socket.schedule_ping = schedule_ping
