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

The same holds for an ``AsyncServer`` and its ``InstrumentedAsyncServer``
(``socketio/async_admin.py``), whose hooks and roster answers are coroutines: the
asyncio twins below have the same names with ``_async``.

Uses ``InstrumentedServer``'s (``InstrumentedAsyncServer``'s) own
``instrument()``/``uninstrument()`` and a few of their attributes (python-socketio 5.x,
``socketio/admin.py``, ``socketio/async_admin.py``); nothing is copied from them.
"""
from __future__ import annotations

import contextlib
import datetime
import os
import sys
import time
from typing import Any, Iterator

import socketio
from socketio.async_pubsub_manager import AsyncPubSubManager

ROSTER = "sticky-cluster:roster"
"""The event, on the admin namespace, that asks every worker to announce its sockets."""

ROSTER_DELAY = 0.2
"""Seconds after an admin connects before the roster is asked for (its connection is done)."""


INSTRUMENTATIONS = (("socketio.admin", "InstrumentedServer"),
                    ("socketio.async_admin", "InstrumentedAsyncServer"))
"""Where python-socketio keeps the class ``instrument()`` attaches, sync and asyncio."""


def instrumentation(server: Any) -> Any | None:
    """The ``InstrumentedServer`` (or ``InstrumentedAsyncServer``) that
    ``server.instrument()`` attached, or None."""
    owner = getattr(server._trigger_event, "__self__", None)
    for module_name, class_name in INSTRUMENTATIONS:
        module = sys.modules.get(module_name)
        if module is not None and isinstance(owner, getattr(module, class_name)):
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
    module = sys.modules[type(admin).__module__]
    module.PID = os.getpid()  # read at import, maybe before the fork
    if admin.server_id in (default_id, module.HOSTNAME):
        admin.server_id = getattr(server.manager, "host_id", None) or f"worker-{os.getpid()}"
    if admin.stats_task is None:
        admin.stop_stats_event = server.eio.create_event()
        admin.stats_task = server.start_background_task(admin._emit_server_stats)
    if admin.mode != "development":
        return
    if isinstance(server.manager, socketio.PubSubManager):
        _answer_rosters(admin, server)
    elif isinstance(server.manager, AsyncPubSubManager):
        _answer_rosters_async(admin, server)


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
    for socket, since in list(_sockets(admin, server.manager)):
        server.emit("socket_connected", (socket, since), namespace=admin.admin_namespace)


def _sockets(admin: Any, manager: Any) -> Iterator[tuple[dict, str]]:
    """(the Admin UI's view of the socket, when it connected) of each socket of this worker."""
    for namespace in list(manager.get_namespaces()):
        for sid, eio_sid in list(manager.get_participants(namespace, None)):
            try:
                socket = admin.serialize_socket(sid, namespace, eio_sid)
            except KeyError:  # it has just gone
                continue
            since = datetime.datetime.fromtimestamp(manager._timestamps.get(sid, time.time()),
                                                    datetime.timezone.utc)
            yield socket, since.isoformat()


def _answer_rosters_async(admin: Any, server: Any) -> None:
    """:func:`_answer_rosters` for an ``AsyncServer``."""
    admin_connect = admin.admin_connect
    handle_emit = server.manager._handle_emit

    async def ask_for_roster() -> None:
        await server.sleep(ROSTER_DELAY)
        await server.emit(ROSTER, None, namespace=admin.admin_namespace)

    async def connect(sid: str, environ: dict, auth: Any = None) -> Any:
        answer = await admin_connect(sid, environ, auth)  # raises when the admin is refused
        server.start_background_task(ask_for_roster)
        return answer

    async def on_emit(message: dict) -> None:
        if message.get("event") == ROSTER and message.get("namespace") == admin.admin_namespace:
            await _announce_sockets_async(admin, server)
        else:
            await handle_emit(message)

    server.on("connect", connect, namespace=admin.admin_namespace)
    server.manager._handle_emit = on_emit


async def _announce_sockets_async(admin: Any, server: Any) -> None:
    """:func:`_announce_sockets` for an ``AsyncServer``."""
    for socket, since in list(_sockets(admin, server.manager)):
        await server.emit("socket_connected", (socket, since), namespace=admin.admin_namespace)
