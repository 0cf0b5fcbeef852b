"""What the master tells a worker it forks: everything the worker needs to boot."""
from __future__ import annotations

import dataclasses
import socket


@dataclasses.dataclass(frozen=True)
class WorkerSpec:
    """The settings of one worker process.

    :param target: ``module:attr`` or ``module:factory()`` naming the app, or the
                   app object itself (any target :mod:`workers.loader` accepts).
    :param slot: the routing slot the worker serves.
    :param tag: the worker's unique number, carried in every sid it makes.
    :param adapter: ``redis://``, ``rediss://`` or ``unix://`` URL of the Redis
                    adapter, or None for the embedded relay through the master.
    :param channel: the pub/sub channel name shared by the whole cluster.
    :param worker_connections: the most connections the worker serves at once.
    :param heartbeat_interval: seconds between two heartbeats sent to the master.
    :param graceful_timeout: seconds a draining worker keeps its sessions at most.
    :param server_address: what the worker reports as its listening address.
    :param family: the address family of ``server_address``.
    """

    target: object
    slot: int
    tag: int
    adapter: str | None
    channel: str
    worker_connections: int
    heartbeat_interval: float
    graceful_timeout: float
    server_address: tuple[str, int] | str
    family: int = socket.AF_INET
