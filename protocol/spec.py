"""What the master tells a worker it forks: everything the worker needs to boot.

- :class:`WorkerSpec`, the settings of one worker, made by the master and inherited by
  the forked child;
- :data:`RUNTIMES`, the worker runtimes by name, as module paths: the master never
  imports a runtime; the forked child imports its own (``import_module(RUNTIMES[name])``)
  and calls its ``serve(spec, sock)``;
- the vocabulary of ``--access-log-format`` (:data:`ATOMS`, :data:`DEFAULT_FORMAT`,
  :func:`check_format`): the master checks the option when it starts, the workers write
  the lines (``workers.access_log``).

Pure data and checks, the standard library only: both sides import it.
"""
from __future__ import annotations

import dataclasses
import socket

RUNTIMES = {
    "eventlet": "workers.eventlet_runtime",
    "gevent": "workers.gevent_runtime",
    "asyncio": "workers.asyncio_runtime",
}
"""Worker runtime name -> the module that implements it, with ``serve(spec, sock)`` (never
returns) and ``check(target)`` (an error line or None)."""

AUTO = "auto"
"""The worker class that means: the one the target needs."""

LOADER = "workers.loader"
"""The module that finds an app's python-socketio server and the runtime it needs
(``load(target, runtime).runtime``, raising its ``TargetError``). The master imports it by
this path only for an app object handed to it (a string target is checked in a
subprocess, ``python -m workers``)."""


@dataclasses.dataclass(frozen=True)
class WorkerSpec:
    """The settings of one worker process.

    A field named like an option of :data:`cluster.options.OPTIONS` is that option (one
    marked ``worker=True`` there), filled by name by the master; the others (target, slot,
    tag, heartbeat_interval, server_address, family, hand_back) are this worker's own. A
    test keeps the two in step.

    :param target: ``module:attr`` or ``module:factory()`` naming the app, or the
                   app object itself (any target :data:`LOADER` accepts).
    :param slot: the routing slot the worker serves.
    :param tag: the worker's unique number, carried in every sid it makes.
    :param adapter: the broker URL (:data:`protocol.adapters.SCHEMES`), or None for
                    the embedded relay through the master.
    :param channel: the pub/sub channel name shared by the whole cluster.
    :param worker_connections: the most connections the worker serves at once.
    :param heartbeat_interval: seconds between two heartbeats sent to the master.
    :param graceful_timeout: seconds a draining worker keeps its sessions at most.
    :param header_timeout: seconds a connection gets to send its request headers.
    :param keepalive_timeout: seconds a keep-alive connection may wait for its next request.
    :param websocket_rate: bytes per second one websocket may send on average.
    :param server_address: what the worker reports as its listening address.
    :param family: the address family of ``server_address``.
    :param access_log: ``--access-log``: a path, ``-`` for standard output, or None.
    :param access_log_format: ``--access-log-format`` (see :data:`ATOMS`).
    :param hand_back: hand a request for another worker's session back to the master
                      (``--route sid``); else serve every request of a connection here.
    """

    target: object
    slot: int
    tag: int
    adapter: str | None
    channel: str
    worker_connections: int
    heartbeat_interval: float
    graceful_timeout: float
    header_timeout: float
    keepalive_timeout: float
    websocket_rate: float
    server_address: tuple[str, int] | str
    family: int = socket.AF_INET
    access_log: str | None = None
    access_log_format: str = ""
    hand_back: bool = True


DEFAULT_FORMAT = ('%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" '
                  'slot=%(slot)s transport=%(transport)s %(L)ss')
"""gunicorn's default line, then the slot, the transport and the seconds taken."""

ATOMS = {
    "h": "remote address", "l": "'-'", "u": "user name ('-')", "t": "date of the request",
    "r": "request line", "m": "method", "U": "path", "q": "query string", "H": "protocol",
    "s": "status", "B": "response length", "b": "response length or '-'", "f": "referer",
    "a": "user agent", "T": "seconds (integer)", "M": "milliseconds", "D": "microseconds",
    "L": "seconds (decimal)", "p": "worker pid", "slot": "worker slot",
    "transport": "Engine.IO transport",
}
"""The atoms a format can use, and what each one stands for."""


def check_format(fmt: str) -> str:
    """Return ``fmt`` if it formats with :data:`ATOMS`; raise ValueError naming the problem."""
    try:
        fmt % {name: "x" for name in ATOMS}
    except KeyError as exc:
        raise ValueError(f"unknown atom %({exc.args[0]})s; known: "
                         + ", ".join(ATOMS)) from None
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{fmt!r}: {exc}") from None
    return fmt
