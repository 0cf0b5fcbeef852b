"""Engine.IO's pings from a timer of the worker's loop, not a thread, green thread or task each.

python-engineio starts a thread or a green thread (sync servers) or an asyncio task
(``AsyncServer``) for every ping of every session (``schedule_ping``, when the client
answers the last one): it sleeps the ping interval (25 s), sends the ping and ends. So every
idle client had one parked for most of its life (a thread, a green thread's stack saved on
the heap, or a task and its coroutine), and every ping made a new one and switched to it.
Here (patched on the session class, in the worker process only, as
:mod:`workers.ping_patience` does) the ping is sent by a timer of the loop (eventlet's hub,
gevent's loop, asyncio's event loop, the threading worker's poller:
:mod:`workers.threading.timers`): the same packet at the same time, ``last_ping`` kept as
python-engineio keeps it, so its ping timeout and :mod:`workers.ping_patience` see what they
saw.

The timer runs in the loop itself, which must not wait: sending a ping only queues it
(``put`` of a session's unbounded queue), and its ping timeout cannot close the session
there (``last_ping`` is set just before).
"""
from __future__ import annotations

import logging
import os
import time
from typing import Any, Callable

from engineio import packet

log = logging.getLogger("sticky_cluster.worker")

CallLater = Callable[..., Any]
"""``call_later(seconds, function, *args)`` of the worker's loop."""
Put = Callable[[Any, packet.Packet], None]
"""Queue a packet for a session, without waiting."""


def through_send(sock: Any, ping: packet.Packet) -> None:
    """:data:`Put` for python-engineio's sync sessions: their own ``send`` (it only queues)."""
    sock.send(ping)


def into_queue(sock: Any, ping: packet.Packet) -> None:
    """:data:`Put` for its asyncio sessions, whose ``send`` is a coroutine: straight into the
    session's unbounded queue (the ping timeout it would check was just reset)."""
    sock.queue.put_nowait(ping)


def send_ping(sock: Any, put: Put) -> None:
    """The ping interval has passed: ping ``sock``'s client, unless its session has ended."""
    if sock.closing or sock.closed:
        return
    sock.last_ping = time.time()
    try:
        put(sock, packet.Packet(packet.PING))
    except Exception:  # noqa: BLE001 - a timer must not raise into the loop
        log.exception("worker %d: the ping of session %s failed", os.getpid(), sock.sid)


def timed_schedule_ping(call_later: CallLater, put: Put) -> Callable[[Any], None]:
    """A ``schedule_ping`` for python-engineio's session classes that pings by ``call_later``."""

    def schedule_ping(sock: Any) -> None:
        # python-engineio's own condition: once the last ping's wait is over
        if sock.last_ping:
            sock.last_ping = None
            call_later(sock.server.ping_interval, send_ping, sock, put)

    return schedule_ping


def install(session_class: type, call_later: CallLater, put: Put) -> None:
    """Make ``session_class`` (``engineio.socket.Socket`` or ``engineio.async_socket.AsyncSocket``)
    ping by ``call_later``, queueing each ping with ``put``."""
    session_class.schedule_ping = timed_schedule_ping(call_later, put)
