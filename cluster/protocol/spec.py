"""What the master tells a worker it forks: everything the worker needs to boot.

:class:`WorkerSpec` is made by the master and inherited by the forked child, which
imports its runtime by the path in :data:`RUNTIMES` (the master never imports one).
"""
from __future__ import annotations

import dataclasses
import importlib
import socket
from typing import Any

from . import sids

RUNTIMES = {
    "eventlet": "workers.eventlet.runtime:EventletRuntime",
    "gevent": "workers.gevent.runtime:GeventRuntime",
    "asyncio": "workers.asyncio.runtime:AsyncioRuntime",
    "threading": "workers.threading.runtime:ThreadingRuntime",
}
"""Worker runtime name -> ``module:class`` of the class that implements it (a
``workers.boot.Runtime``): ``Class(spec, sock).serve()`` boots a worker and never returns,
``Class.check(target)`` loads the app as such a worker would (an error line or None).
Resolved by :func:`runtime_class`."""


def runtime_class(name: str) -> Any:
    """The class of the runtime ``name`` (a key of :data:`RUNTIMES`), imported now: only
    in a forked worker or in the check subprocess, never in the master itself."""
    module, _, attribute = RUNTIMES[name].partition(":")
    return getattr(importlib.import_module(module), attribute)


AUTO = "auto"
"""The worker class that means: the one the target needs."""

CHECK_WARNING = "warning: "
"""How ``python -m workers`` (the master's check of the app) starts a line of its standard
output that is a warning for the user, before the runtime's name."""

LOADER = "workers.loader"
"""The module that finds an app's python-socketio server and the runtime it needs
(``load(target, runtime).runtime``, raising its ``TargetError``). The master imports it by
this path only for an app object handed to it (a string target is checked in a
subprocess, ``python -m workers``)."""


@dataclasses.dataclass(frozen=True)
class WorkerSpec:
    """The settings of one worker process.

    A field named like an option of :data:`cluster.setup.options.OPTIONS` is that option (one
    marked ``worker=True`` there), filled by name by the master; the others (target, slot,
    tag, heartbeat_interval, server_address, family, hand_back, place_new_sessions, host) are this
    worker's own. A test keeps the two in step.

    :param target: ``module:attr`` or ``module:factory()`` naming the app, or the
                   app object itself (any target :data:`LOADER` accepts).
    :param slot: the routing slot the worker serves.
    :param tag: the worker's unique number, carried in every sid it makes.
    :param host: this host's id among the hosts that share sessions (0: a host alone),
                 carried in every sid too.
    :param adapter: the broker URL (:data:`cluster.protocol.adapters.SCHEMES`), or None for
                    the embedded relay through the master.
    :param channel: the pub/sub channel name shared by the whole cluster.
    :param worker_connections: the most connections the worker serves at once.
    :param heartbeat_interval: seconds between two heartbeats sent to the master.
    :param graceful_timeout: seconds a draining worker keeps its sessions at most.
    :param drain_spread: seconds over which a drain closes the sessions left at the
                         graceful timeout, evenly, so that they do not reconnect at once.
    :param header_timeout: seconds a connection gets to send its request headers.
    :param keepalive_timeout: seconds a keep-alive connection may wait for its next request.
    :param websocket_rate: bytes per second one websocket may send on average.
    :param websocket_deflate: grant permessage-deflate to a websocket client that offers it.
    :param server_address: what the worker reports as its listening address.
    :param family: the address family of ``server_address``.
    :param access_log: ``--access-log``: a path, ``-`` for standard output, or None.
    :param access_log_format: ``--access-log-format`` (see :mod:`cluster.protocol.access_log_format`).
    :param threads: ``--threads``: the threading worker's pool size (None: its default;
                    the other runtimes refuse it before any fork).
    :param forwarded_allow_ips: ``--forwarded-allow-ips``: peers whose ``X-Forwarded-Proto``
                                and ``X-Forwarded-Host`` are believed.
    :param hand_back: hand a request for another worker's session back to the master
                      (``--route sid``); else serve every request of a connection here.
    :param place_new_sessions: hand back, too, a kept-alive connection's later request that
                               starts a session, for the master to place it (``--route sid``
                               with ``--balance least-loaded`` or ``random``).
    """

    target: object
    slot: int
    tag: int
    adapter: str | None
    channel: str
    worker_connections: int
    heartbeat_interval: float
    graceful_timeout: float
    drain_spread: float
    header_timeout: float
    keepalive_timeout: float
    websocket_rate: float
    server_address: tuple[str, int] | str
    family: int = socket.AF_INET
    access_log: str | None = None
    access_log_format: str = ""
    threads: int | None = None
    forwarded_allow_ips: str = ""
    hand_back: bool = True
    place_new_sessions: bool = False
    host: int = 0
    websocket_deflate: bool = False

    @property
    def owner(self) -> int:
        """This worker's owner number (host and tag), as :func:`cluster.protocol.sids.owner_of`
        reads it from the sids it makes."""
        return sids.owner(self.tag, self.host)
