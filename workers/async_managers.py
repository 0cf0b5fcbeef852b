"""The asyncio twins of :mod:`workers.managers`, with the same names, for an ``AsyncServer``.

The relay's set-up, encoding and decisions (which worker a relayed message is for,
when an addressed emit must go to everyone after all) are :mod:`workers.relay_base`'s,
shared with the green twin; only the waiting differs. :func:`workers.managers.install` picks these for an ``AsyncServer``.
"""
from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator

import socketio
from socketio.async_pubsub_manager import AsyncPubSubManager

from cluster.protocol import adapters

from .relay_base import RelayBase


class LocalUnicast:
    """Mixin for a ``AsyncPubSubManager``: an emit to a sid of this process skips the queue.

    See :class:`workers.managers.LocalUnicast`. Put it before the manager class in the bases.
    """

    async def emit(self, event: str, data: Any, namespace: str | None = None, room: Any = None,
                   skip_sid: Any = None, callback: Any = None, to: Any = None,
                   **kwargs: Any) -> None:
        """Emit like ``AsyncPubSubManager.emit``; a sid of this process is served without the queue."""
        room = to or room
        namespace = namespace or "/"
        if isinstance(room, str) and self.is_sid_room(namespace, room):  # type: ignore[attr-defined]
            kwargs["ignore_queue"] = True
        await super().emit(event, data, namespace=namespace, room=room,  # type: ignore[misc]
                           skip_sid=skip_sid, callback=callback, **kwargs)


class RedisManager(LocalUnicast, socketio.AsyncRedisManager):
    """python-socketio's ``AsyncRedisManager``, with unicasts to this process kept off Redis."""


class RelayManager(RelayBase, LocalUnicast, AsyncPubSubManager):
    """An asyncio pub/sub manager that relays through the master (see :class:`workers.managers.RelayManager`).

    :param link: the worker's channel to the master (``send`` never waits).
    :param channel: the channel name (kept for log lines; the master is the bus).
    :param tag: this worker's tag, the one its sids carry.
    """

    def __init__(self, link: Any, channel: str, tag: int) -> None:
        super().__init__(channel=channel)
        self._inbox: asyncio.Queue[bytes] = asyncio.Queue()
        self._join_relay(link, tag, self._inbox.put_nowait)

    async def _publish(self, data: dict[str, Any]) -> None:
        self._relay(data)

    async def _handle_emit(self, message: dict[str, Any]) -> None:
        await super()._handle_emit(message)
        self._relay_if_misaddressed(message)

    async def _listen(self) -> AsyncIterator[bytes]:  # type: ignore[override]
        while True:
            yield await self._inbox.get()


MANAGERS: dict[str, type[AsyncPubSubManager]] = {
    "redis": RedisManager,
}
"""The manager class of each broker family (:data:`cluster.protocol.adapters.SCHEMES`), asyncio.
AMQP has none here yet: python-socketio's ``AsyncAioPikaManager`` needs aio-pika."""


def broker_manager(url: str, channel: str) -> AsyncPubSubManager:
    """The asyncio pub/sub manager for the broker at ``url``, built in this (forked) process.

    Raises ValueError (a boot failure, one line) for a broker family with no asyncio manager.
    """
    family = adapters.scheme_of(url).family
    if family not in MANAGERS:
        raise ValueError(f"the {family} adapter is not available for asyncio workers yet: "
                         "use a redis:// or valkey:// URL, or an eventlet or gevent app")
    return MANAGERS[family](url, channel=channel)
