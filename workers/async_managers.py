"""The asyncio twins of :mod:`workers.managers`, with the same names, for an ``AsyncServer``.

The relay's set-up, encoding and decisions (which worker a relayed message is for,
when an addressed emit must go to everyone after all) are :mod:`workers.relay_base`'s,
shared with the green twin; only the waiting differs. :func:`workers.managers.install` picks these for an ``AsyncServer``.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, AsyncIterator

import socketio
from engineio import packet as eio_packet
from socketio import packet
from socketio.async_manager import AsyncManager
from socketio.async_pubsub_manager import AsyncPubSubManager

from cluster.protocol import adapters

from .relay_base import RelayBase

log = logging.getLogger("sticky_cluster.worker")


class InlineFanOut(AsyncManager):
    """An ``AsyncManager`` whose emit without a callback puts the packet in each recipient's
    queue in turn, instead of from an asyncio task per recipient.

    python-socketio's ``AsyncManager.emit`` makes a task for every recipient and waits for
    them all. A session's queue is unbounded (:mod:`workers.asyncio.packet_queue`), so a put
    never waits, and the tasks are pure cost: py-spy on a worker broadcasting to 4,000
    clients put a fifth of its CPU in making, scheduling and waiting for them.
    Hand-written for that cost, as the sync ``Manager`` of python-socketio does it; an emit
    with a callback (an ack id per recipient) is python-socketio's own. A recipient whose
    send fails is logged, and the others still get the packet, as with the tasks. Put it
    after the pub/sub manager class in the bases, so that what the pub/sub manager hands
    to its ``AsyncManager`` goes through it.
    """

    async def emit(self, event: str, data: Any, namespace: str, room: Any = None,
                   skip_sid: Any = None, callback: Any = None, to: Any = None,
                   **kwargs: Any) -> None:
        """Emit like ``AsyncManager.emit``."""
        room = to or room
        if callback is not None or namespace not in self.rooms:
            await super().emit(event, data, namespace, room=room, skip_sid=skip_sid,
                               callback=callback, **kwargs)
            return
        if isinstance(data, tuple):  # a tuple is several arguments, anything else one
            data = list(data)
        else:
            data = [] if data is None else [data]
        skipped = skip_sid if isinstance(skip_sid, list) else [skip_sid]
        encoded = self.server.packet_class(packet.EVENT, namespace=namespace,
                                           data=[event, *data]).encode()
        eio_packets = [eio_packet.Packet(eio_packet.MESSAGE, part)
                       for part in (encoded if isinstance(encoded, list) else [encoded])]
        for sid, eio_sid in list(self.get_participants(namespace, room)):
            if sid in skipped:
                continue
            try:
                for eio_pkt in eio_packets:
                    await self.server._send_eio_packet(eio_sid, eio_pkt)
            except Exception:  # noqa: BLE001 - one recipient's failure is not the others'
                log.exception("an emit to %s failed", sid)


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


class RedisManager(LocalUnicast, socketio.AsyncRedisManager, InlineFanOut):
    """python-socketio's ``AsyncRedisManager``, with unicasts to this process kept off Redis
    and emits fanned out without a task per recipient (:class:`InlineFanOut`)."""


class RelayManager(RelayBase, LocalUnicast, AsyncPubSubManager, InlineFanOut):
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
