"""``python -m bench.host_loss --fleet``: a host killed with -9 under the scale benchmark's clients.

The clients are :mod:`bench.fleet`'s (raw Socket.IO websocket clients, each from its own
loopback address, in load processes of at most :data:`bench.scale.CLIENTS_PER_LOAD_PROCESS`
for the fd limit), which reconnect with socket.io-client's default randomized backoff: the
storm a host's loss makes in production, at thousands of clients, where python-socketio
clients (the default mode) cost too much to run. The storm is :func:`bench.scale.kill_storm`
with the host's processes as its victims; after it, :data:`NEWCOMERS` new clients connect
from addresses no client used before.

This module only drives the fleet; :mod:`bench.host_loss` starts and stops the hosts and
nginx. It starts no other process than the load processes, and stops them by PID.
"""
from __future__ import annotations

import argparse
import math
import time
from typing import Any

from . import loadgen, scale
from .balancer_polling import WORKER_CONNECTIONS
from .fleet import Fleets

NEWCOMERS = 10
"""Clients that connect for the first time after the storm."""

CONNECT_CONCURRENCY = 20
"""Connects in flight per load process while the clients first connect (as bench.scale)."""

CONNECT_TIMEOUT = 600.0
"""Seconds the clients get to connect before the kill."""

BACK_TIMEOUT = 120.0
"""Seconds the lost clients get to come back (as bench.scale's ``--storm-timeout``)."""

SETTLE = 2.0
"""Seconds between the last connect and the kill."""

UPSTREAM_SOURCES = 8
"""Addresses nginx connects to the hosts from (bench.balancer_polling.round_robin's
``sources``): 8 × 28,232 ephemeral ports per host."""


def nginx_workers(clients: int) -> int:
    """nginx workers for ``clients`` (newcomers included): each client takes two of a
    worker's connections (its own and the upstream one), and a worker is given at most half
    of its :data:`~bench.balancer_polling.WORKER_CONNECTIONS`, for the uneven spread of
    ``reuseport``; at least 2, so that a small run goes the way of a large one."""
    return max(2, math.ceil(2 * (clients + NEWCOMERS) / (WORKER_CONNECTIONS // 2)))


def load_procs(clients: int) -> int:
    """Load processes for ``clients`` (newcomers included), at most
    :data:`bench.scale.CLIENTS_PER_LOAD_PROCESS` each; at least 2, as :func:`nginx_workers`."""
    return max(2, math.ceil((clients + NEWCOMERS) / scale.CLIENTS_PER_LOAD_PROCESS))


def most_clients(workers: int) -> int:
    """The most clients ``workers`` workers per host can hold once one host of three is
    lost (the two left hold them all, :data:`bench.scale.FD_PER_WORKER` per worker), and
    each client from its own loopback address, the newcomers included."""
    return min(2 * workers * scale.FD_PER_WORKER, loadgen.MAX_CLIENT_SOURCES - NEWCOMERS)


def result(clients: int, connected: int, storm: dict[str, Any], new: int) -> dict[str, Any]:
    """The run's figures from the storm's (:func:`bench.scale.kill_storm`): ``lost`` and
    ``back`` count clients, ``failed`` the reconnect attempts that failed, and
    ``back_after_kill_s`` the time from the kill until each lost client was back."""
    return {"mode": "fleet", "clients": clients, "connected": connected,
            "on_killed_host": storm["killed_worker_clients"], "lost": storm["clients_lost"],
            "back": storm["clients_back"], "failed": storm["failed_attempts"],
            "back_after_kill_s": storm["back_after_s"], "others_dropped": storm["others_dropped"],
            "live_after": storm["live"], "new": new}


def measure(url: str, victims: set[int], args: argparse.Namespace) -> dict[str, Any]:
    """Connect ``args.clients`` fleet clients through ``url``, ``SIGKILL`` the ``victims``
    at once, wait until the lost clients are back, then connect the newcomers."""
    procs = load_procs(args.clients)
    fleets = Fleets(scale.fleet_args(url, args.clients + NEWCOMERS, CONNECT_CONCURRENCY), procs)
    try:
        answers = fleets.ask(("connect", args.clients, loadgen.now() + CONNECT_TIMEOUT),
                             CONNECT_TIMEOUT + 60)
        connected = sum(answer["live"] for answer in answers)
        time.sleep(SETTLE)
        storm = scale.kill_storm(fleets, connected, BACK_TIMEOUT, victims=victims)
        answers = fleets.ask(("connect", args.clients + NEWCOMERS, loadgen.now() + 60,
                              args.clients), 90)
        out = result(args.clients, connected, storm, sum(a["connected"] for a in answers))
        out.update(load_procs=procs)
        return out
    finally:
        fleets.stop()
