"""Keep python-socketio's Admin UI instrumentation on the manager the worker installs.

An app may call ``sio.instrument()`` at import, before the worker swaps in the cluster's
client manager (:mod:`workers.managers`). ``instrument()`` patched the manager it found
(its ``_timestamps``, ``emit``, ``basic_enter_room``/``basic_leave_room``): left alone,
every connection fails on the new one. So the worker takes the instrumentation off the
old manager before the swap and puts it back on the new one after it.

What makes the Admin UI see every worker is the manager itself: the admin's events
(``server_stats``, ``socket_connected`` …) are emits to the ``/admin`` namespace, which
a pub/sub manager (the relay or Redis) publishes to every worker, so an admin client on
any worker receives them all. Three per-process facts are set here, since the defaults
are wrong after a fork: each worker reports its own ``pid`` and its own ``serverId``
(the Admin UI lists servers by it), and it reports its stats from boot, not from its
first client, so that an idle worker shows too.

One gap is filled: an admin client that connects gets the sockets of its own worker
only (``all_sockets``); the others would show at their next ping (25 s by default). So
the worker it connects to publishes a roster request (:data:`ROSTER`, an emit to the
admin namespace that no client receives) and every worker answers with a
``socket_connected`` for each of its sockets.

Uses ``InstrumentedServer``'s own ``instrument()``/``uninstrument()`` and a few of its
attributes (python-socketio 5.x, ``socketio/admin.py``); nothing is copied from it.
"""
from __future__ import annotations

import contextlib
import datetime
import os
import sys
import time
from typing import Any, Iterator

import socketio

ROSTER = "sticky-cluster:roster"
"""The event, on the admin namespace, that asks every worker to announce its sockets."""

ROSTER_DELAY = 0.2
"""Seconds after an admin connects before the roster is asked for (its connection is done)."""


def instrumentation(server: Any) -> Any | None:
    """The ``InstrumentedServer`` that ``server.instrument()`` attached, or None."""
    admin = sys.modules.get("socketio.admin")
    owner = getattr(server._trigger_event, "__self__", None)
    if admin is not None and isinstance(owner, admin.InstrumentedServer):
        return owner
    return None


@contextlib.contextmanager
def following_manager_swap(server: Any) -> Iterator[None]:
    """Around a change of ``server.manager``: the Admin UI instrumentation moves with it."""
    admin = instrumentation(server)
    if admin is None:
        yield
        return
    default_id = getattr(server.manager, "host_id", None)
    admin.uninstrument()
    try:
        yield
    finally:
        admin.instrument()
        _per_worker(admin, server, default_id)


def _per_worker(admin: Any, server: Any, default_id: str | None) -> None:
    """Give the instrumentation this worker's pid and id, and start its stats now."""
    sys.modules["socketio.admin"].PID = os.getpid()  # read at import, maybe before the fork
    if admin.server_id in (default_id, sys.modules["socketio.admin"].HOSTNAME):
        admin.server_id = getattr(server.manager, "host_id", None) or f"worker-{os.getpid()}"
    if admin.stats_task is None:
        admin.stop_stats_event = server.eio.create_event()
        admin.stats_task = server.start_background_task(admin._emit_server_stats)
    if admin.mode == "development" and isinstance(server.manager, socketio.PubSubManager):
        _answer_rosters(admin, server)


def _answer_rosters(admin: Any, server: Any) -> None:
    """Ask every worker for its sockets when an admin connects; answer such requests."""
    admin_connect = admin.admin_connect
    handle_emit = server.manager._handle_emit

    def ask_for_roster() -> None:
        server.sleep(ROSTER_DELAY)
        server.emit(ROSTER, None, namespace=admin.admin_namespace)

    def connect(sid: str, environ: dict, auth: Any = None) -> Any:
        answer = admin_connect(sid, environ, auth)  # raises when the admin is refused
        server.start_background_task(ask_for_roster)
        return answer

    def on_emit(message: dict) -> None:
        if message.get("event") == ROSTER and message.get("namespace") == admin.admin_namespace:
            _announce_sockets(admin, server)
        else:
            handle_emit(message)

    server.on("connect", connect, namespace=admin.admin_namespace)
    server.manager._handle_emit = on_emit  # local emits and the pub/sub listener both call it


def _announce_sockets(admin: Any, server: Any) -> None:
    """Emit ``socket_connected`` for each socket of this worker, as at each of its pings."""
    manager = server.manager
    for namespace in list(manager.get_namespaces()):
        for sid, eio_sid in list(manager.get_participants(namespace, None)):
            try:
                socket = admin.serialize_socket(sid, namespace, eio_sid)
            except KeyError:  # it has just gone
                continue
            since = datetime.datetime.fromtimestamp(manager._timestamps.get(sid, time.time()),
                                                    datetime.timezone.utc)
            server.emit("socket_connected", (socket, since.isoformat()),
                        namespace=admin.admin_namespace)
