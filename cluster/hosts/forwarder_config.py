"""What the forwarder process is told when the master forks it; standard library only.

The master builds a :class:`ForwarderConfig` from its settings without importing asyncio
or a broker client; :func:`cluster.hosts.forwarder.serve` runs with it in the child.
"""
from __future__ import annotations

import dataclasses

from .addresses import Address


@dataclasses.dataclass(frozen=True)
class ForwarderConfig:
    """The forwarder's settings.

    :param host_id: this host's id (1..4095).
    :param advertise: this host's advertised address; the forwarder connects to peers
                      from its IP, and refuses to forward to it (a loop).
    :param adapter: the Redis-family adapter URL that carries the directory, or None with
                    static ``peers``.
    :param channel: the cluster's channel name (the directory keys start with it).
    :param peers: the static directory (``--peers``), used when ``adapter`` is None.
    :param header_timeout: seconds for a client's request head, and for a peer's response
                           head (then ``502``); keep it above the app's Engine.IO
                           ``ping_interval``: a long-poll GET is answered only then.
    :param keepalive_timeout: seconds an idle client connection is kept for its next request.
    :param heartbeat_interval: seconds between two HEARTBEAT (and HOSTS) messages.
    :param graceful_timeout: seconds to finish the open connections after DRAIN.
    :param forwarded_allow_ips: ``--forwarded-allow-ips`` (the workers believe a socket
                                pair's ``X-Forwarded-*`` headers, as a local peer's).
    :param connection_limit: most client connections served at once
                             (``--worker-connections``); one more is answered ``503`` and
                             closed, so that a flood of them cannot take every file
                             descriptor of the forwarder from the clients it serves.
    """

    host_id: int
    advertise: Address
    adapter: str | None = None
    channel: str = "socketio"
    peers: dict[int, Address] = dataclasses.field(default_factory=dict)
    header_timeout: float = 60.0
    keepalive_timeout: float = 75.0
    heartbeat_interval: float = 1.0
    graceful_timeout: float = 30.0
    forwarded_allow_ips: str = ""
    connection_limit: int = 10_000
