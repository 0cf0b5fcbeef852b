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

Uses ``InstrumentedServer``'s own ``instrument()``/``uninstrument()`` and a few of its
attributes (python-socketio 5.x, ``socketio/admin.py``); nothing is copied from it.
"""
from __future__ import annotations

import contextlib
import os
import sys
from typing import Any, Iterator


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
