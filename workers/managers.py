"""The client manager each worker installs on the app's python-socketio Server.

- ``--adapter URL``: python-socketio's manager for that broker, one channel per cluster:
  :class:`RedisManager` (Redis, Valkey, Sentinel) or :class:`KombuManager` (AMQP), by
  the URL's scheme (:data:`MANAGERS`, keyed by :data:`cluster.protocol.adapters.SCHEMES`).
- no adapter: :class:`RelayManager`, whose publish goes to the master, which hands it
  to the other workers of this host: to the one that owns the addressed sid, or to all.
- the app brought its own pub/sub manager: it is kept, with a fresh ``host_id`` (a
  manager built before fork would otherwise share its id with every worker, and each
  worker would drop the others' messages as its own). A stock python-socketio manager
  also gets :class:`LocalUnicast`; a class of the app's own is left exactly as it is.

python-socketio's ``PubSubManager`` publishes every emit, even one to a client of this
very process. :class:`LocalUnicast` delivers those here, and the relay addresses an emit
to another worker's sid to that worker only: the sid names it (:mod:`cluster.protocol.sids`).

This module serves the green runtimes (eventlet, gevent): its queue is the standard
library's, which both make green when they monkey-patch. Its asyncio twins, with the
same names, are in :mod:`workers.async_managers`; :func:`install` picks by the server.
"""
from __future__ import annotations

import logging
import queue
import sys
import uuid
from typing import Any, Iterator

import socketio

from cluster.protocol import adapters
from cluster.protocol.spec import WorkerSpec

from . import admin_ui
from .relay_base import RelayBase

log = logging.getLogger("sticky_cluster.worker")


class LocalUnicast:
    """Mixin for a ``socketio.PubSubManager``: an emit to a sid of this process skips the queue.

    When the emit's room is a sid connected (or connecting) to this process in the emit's
    namespace, the message is delivered here, with its callback kept here, and never
    published. Everything else (rooms, broadcasts, other processes' sids) goes through
    the manager's own ``emit``, unchanged. Put it before the manager class in the bases.
    """

    def emit(self, event: str, data: Any, namespace: str | None = None, room: Any = None,
             skip_sid: Any = None, callback: Any = None, to: Any = None, **kwargs: Any) -> None:
        """Emit like ``PubSubManager.emit``; a sid of this process is served without the queue."""
        room = to or room
        namespace = namespace or "/"
        if isinstance(room, str) and self.is_sid_room(namespace, room):  # type: ignore
            kwargs["ignore_queue"] = True
        super().emit(event, data, namespace=namespace, room=room,  # type: ignore[misc]
                     skip_sid=skip_sid, callback=callback, **kwargs)


class RedisManager(LocalUnicast, socketio.RedisManager):
    """python-socketio's ``RedisManager`` (Redis and Valkey, plain, TLS, unix, Sentinel),
    with unicasts to this process kept off the broker.

    Another process's sid is still published: it may live on another host.
    """


class KombuManager(LocalUnicast, socketio.KombuManager):
    """python-socketio's ``KombuManager`` (AMQP: RabbitMQ), with unicasts to this process
    kept off the broker. The exchange is named after the channel.

    python-socketio publishes through Kombu's ``ensure`` with no retry limit, so on a
    dead broker every emit would hang the event that made it for as long as the broker
    stays down. Here a publish reconnects once, without waiting, and gives up, as the
    Redis manager does: the broadcast is lost and logged, the event goes on. The listener
    keeps python-socketio's reconnection with backoff.
    """

    def __init__(self, url: str, channel: str) -> None:
        super().__init__(url, channel=channel,
                         connection_options={"transport_options": {"max_retries": 0}})

    def _producer_publish(self, connection: Any) -> Any:
        producer = connection.Producer(exchange=self._exchange(), **self.producer_options)
        return connection.ensure(producer, producer.publish, max_retries=1, interval_start=0)


MANAGERS: dict[str, type[socketio.PubSubManager]] = {
    "redis": RedisManager,
    "amqp": KombuManager,
}
"""The manager class of each broker family (:data:`cluster.protocol.adapters.SCHEMES`), eventlet."""


def broker_manager(url: str, channel: str) -> socketio.PubSubManager:
    """The pub/sub manager for the broker at ``url``, built in this (forked) process.

    Built after the fork, it draws its own ``host_id``: no other worker shares it.
    """
    return MANAGERS[adapters.scheme_of(url).family](url, channel=channel)


class RelayManager(RelayBase, LocalUnicast, socketio.PubSubManager):
    """A pub/sub manager that relays through the master: one host, no Redis needed.

    A message for one sid (an emit, a disconnect, a room change, an ack going back to
    the worker that asked) goes to the worker whose tag the sid carries, through the
    master, and to no one else. ``host_id`` is shaped like a sid of this worker, so that
    an ack finds its way back the same way. The set-up, the encoding (python-socketio's
    own) and the addressing are :class:`workers.relay_base.RelayBase`'s.

    :param link: the worker's channel to the master.
    :param channel: the channel name (kept for log lines; the master is the bus).
    :param tag: this worker's tag, the one its sids carry.
    """

    def __init__(self, link: Any, channel: str, tag: int) -> None:
        super().__init__(channel=channel)
        self._inbox: queue.Queue[bytes] = queue.Queue()
        self._join_relay(link, tag, self._inbox.put)

    def _publish(self, data: dict[str, Any]) -> None:
        self._relay(data)

    def _handle_emit(self, message: dict[str, Any]) -> None:
        super()._handle_emit(message)
        self._relay_if_misaddressed(message)

    def _listen(self) -> Iterator[bytes]:
        while True:
            yield self._inbox.get()


def install(server: Any, spec: WorkerSpec, link: Any) -> Any:
    """Give ``server`` the cluster's client manager and initialise it now.

    ``server`` is a ``socketio.Server`` or a ``socketio.AsyncServer`` (then this runs
    on its event loop, and the managers are those of :mod:`workers.async_managers`);
    ``link`` is the worker's channel to the master, with ``send(kind, payload)`` and
    ``on_deliver``. Initialising at boot makes a Redis or set-up error show before the
    worker reports ready, not at its first client. An Admin UI instrumentation
    (``sio.instrument()``) follows the new manager (:mod:`workers.admin_ui`).
    """
    with admin_ui.following_manager_swap(server):
        manager = _swap(server, spec, link)
    if not server.manager_initialized:
        server.manager_initialized = True
        manager.initialize()
    return manager


def _swap(server: Any, spec: WorkerSpec, link: Any) -> Any:
    """Install the cluster's manager on ``server`` (or adapt the app's own); return it."""
    if isinstance(server, socketio.AsyncServer):
        from . import async_managers as kinds
        pubsub: type = kinds.AsyncPubSubManager
    else:
        kinds, pubsub = sys.modules[__name__], socketio.PubSubManager
    manager = server.manager
    if isinstance(manager, pubsub):
        manager.host_id = uuid.uuid4().hex
        stock = type(manager).__module__.startswith("socketio.")
        if stock:
            manager.__class__ = type(type(manager).__name__, (kinds.LocalUnicast, type(manager)), {})
        if spec.slot == 0:
            log.info("keeping the app's own %s (channel %r)%s", type(manager).__name__,
                     getattr(manager, "channel", None),
                     "" if stock else "; its emits to local sids still go through its queue")
    else:
        if spec.adapter:
            manager = kinds.broker_manager(spec.adapter, spec.channel)
        else:
            manager = kinds.RelayManager(link, channel=spec.channel, tag=spec.tag)
        manager.set_server(server)
        server.manager = manager
    return manager
