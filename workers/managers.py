"""The client manager each worker installs on the app's python-socketio Server.

- ``--adapter redis://…``: python-socketio's ``RedisManager``, one channel per cluster.
- no adapter: :class:`RelayManager`, whose publish goes to the master, which hands it
  to every other worker of this host.
- the app brought its own pub/sub manager: it is kept, with a fresh ``host_id`` (a
  manager built before fork would otherwise share its id with every worker, and each
  worker would drop the others' messages as its own).
"""
from __future__ import annotations

import logging
import pickle
import uuid
from typing import Any, Iterator

import eventlet.queue
import socketio

from cluster.channel import Kind

from .link import MasterLink
from .spec import WorkerSpec

log = logging.getLogger("sticky_cluster.worker")


class RelayManager(socketio.PubSubManager):
    """A pub/sub manager that relays through the master: one host, no Redis needed.

    :param link: the worker's channel to the master.
    :param channel: the channel name (kept for log lines; the master is the bus).
    """

    name = "sticky-relay"

    def __init__(self, link: MasterLink, channel: str) -> None:
        super().__init__(channel=channel)
        self._link = link
        self._inbox: eventlet.queue.LightQueue = eventlet.queue.LightQueue()
        link.on_deliver = self._inbox.put

    def _publish(self, data: dict[str, Any]) -> None:
        self._link.send(Kind.PUBLISH, pickle.dumps(data, pickle.HIGHEST_PROTOCOL))

    def _listen(self) -> Iterator[dict[str, Any]]:
        while True:
            yield pickle.loads(self._inbox.get())


def install(server: socketio.Server, spec: WorkerSpec, link: MasterLink) -> socketio.Manager:
    """Give ``server`` the cluster's client manager and initialise it now.

    Initialising at boot makes a Redis or set-up error show before the worker
    reports ready, not at its first client.
    """
    manager = server.manager
    if isinstance(manager, socketio.PubSubManager):
        manager.host_id = uuid.uuid4().hex
        if spec.slot == 0:
            log.info("keeping the app's own %s (channel %r)", type(manager).__name__,
                     getattr(manager, "channel", None))
    else:
        if spec.adapter:
            manager = socketio.RedisManager(spec.adapter, channel=spec.channel)
        else:
            manager = RelayManager(link, channel=spec.channel)
        manager.set_server(server)
        server.manager = manager
    if not server.manager_initialized:
        server.manager_initialized = True
        manager.initialize()
    return manager
