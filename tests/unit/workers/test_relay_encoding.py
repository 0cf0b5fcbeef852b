"""The embedded relay carries an emit in python-socketio's own encoding, byte for byte.

For the same emit, the bytes the relay manager sends to the master equal those
python-socketio's ``RedisManager`` publishes (its ``_publish`` runs unchanged against a
fake Redis client that keeps what it is given), and each manager's listener decodes the
other's message into the same pub/sub message. Both twins, green and asyncio. No Redis.
"""
from __future__ import annotations

import asyncio
from typing import Any

import pytest
import socketio

from cluster.protocol import frames
from cluster.protocol.frames import Kind
from workers import async_managers, managers
from cluster.protocol.sids import sid_prefix, make_sid

TAG = 5
OTHER_TAG = 9


class _Link:
    """The worker's channel as a relay manager sees it: what it sends is kept."""

    def __init__(self) -> None:
        self.sent: list[tuple[Kind, bytes]] = []
        self.on_deliver: Any = None

    def send(self, kind: Kind, payload: bytes = b"") -> None:
        self.sent.append((kind, payload))


class _FakeRedis:
    """Keeps what ``publish`` is given, encoded as a Redis client puts it on the wire."""

    def __init__(self) -> None:
        self.published: list[bytes] = []

    def publish(self, _channel: str, data: str | bytes) -> int:
        self.published.append(data if isinstance(data, bytes) else data.encode("utf-8"))
        return 1


class _AsyncFakeRedis(_FakeRedis):
    async def publish(self, _channel: str, data: str | bytes) -> int:  # type: ignore[override]
        return super().publish(_channel, data)


class _CapturingRedisManager(socketio.RedisManager):
    """python-socketio's RedisManager whose connection is a :class:`_FakeRedis`."""

    def _redis_connect(self) -> None:
        self.redis = _FakeRedis()
        self.connected = True


class _AsyncCapturingRedisManager(socketio.AsyncRedisManager):
    def _redis_connect(self) -> None:
        self.redis = _AsyncFakeRedis()
        self.connected = True


class _Stop(BaseException):
    """Ends a pub/sub listener loop (which survives any ``Exception``) from a handler."""


EMITS = [
    ("chat", {"text": "héllo", "n": 1}, None),
    ("pair", ("a", 2, [3.5, None]), None),
    ("blob", {"raw": b"\x00\xffbytes"}, None),
    ("chat", "to one client", make_sid(sid_prefix(OTHER_TAG))),
]
"""(event, data, room): a broadcast, a tuple, binary data, an emit to another worker's sid."""
EMIT_IDS = ["broadcast", "tuple", "binary", "to-another-workers-sid"]
"""Fixed test ids: the last case's sid is random, and parallel runs must collect the same ids."""


def _sync_pair() -> tuple[managers.RelayManager, _CapturingRedisManager, _Link]:
    link = _Link()
    relay = managers.RelayManager(link, channel="socketio", tag=TAG)
    redis = _CapturingRedisManager("redis://localhost:1/0", channel="socketio")
    for manager in (relay, redis):
        manager.set_server(socketio.Server(async_mode="threading"))
    redis.host_id = relay.host_id  # the host id travels in the message
    return relay, redis, link


def _relayed(kind: Kind, payload: bytes, room: str | None) -> bytes:
    """The pub/sub bytes inside a relay channel message."""
    if room is None:
        assert kind is Kind.PUBLISH
        return payload
    assert kind is Kind.PUBLISH_TO
    tag, inner = frames.split_addressed(payload)
    assert tag == OTHER_TAG
    return bytes(inner)


@pytest.mark.parametrize("event, data, room", EMITS, ids=EMIT_IDS)
def test_relay_sends_the_bytes_redis_manager_publishes(event, data, room):
    relay, redis, link = _sync_pair()
    relay.emit(event, data, room=room)
    redis.emit(event, data, room=room)
    [(kind, payload)] = link.sent
    [published] = redis.redis.published
    assert _relayed(kind, payload, room) == published


@pytest.mark.parametrize("event, data, room", EMITS, ids=EMIT_IDS)
def test_async_relay_sends_the_bytes_async_redis_manager_publishes(event, data, room):
    async def scenario() -> None:
        link = _Link()
        relay = async_managers.RelayManager(link, channel="socketio", tag=TAG)
        redis = _AsyncCapturingRedisManager("redis://localhost:1/0", channel="socketio")
        for manager in (relay, redis):
            manager.set_server(socketio.AsyncServer())
        redis.host_id = relay.host_id
        await relay.emit(event, data, room=room)
        await redis.emit(event, data, room=room)
        [(kind, payload)] = link.sent
        [published] = redis.redis.published
        assert _relayed(kind, payload, room) == published

    asyncio.run(scenario())


def _handled_by(manager: Any) -> list[dict]:
    """Make ``manager`` record the first emit its listener hands on, then stop listening."""
    handled: list[dict] = []

    def record(message: dict) -> None:
        handled.append(message)
        raise _Stop

    manager._handle_emit = record
    return handled


def test_relay_and_redis_manager_decode_each_others_messages():
    relay, redis, link = _sync_pair()
    relay.host_id, redis.host_id = "relay-host", "redis-host"
    relay.emit("pair", ("a", 1))
    redis.emit("pair", ("a", 1))
    [(_, from_relay)] = link.sent
    [from_redis] = redis.redis.published
    emit = {"method": "emit", "event": "pair", "namespace": "/", "room": None,
            "skip_sid": None, "callback": None, "binary": False, "data": ["a", 1]}

    link.on_deliver(from_redis)  # the master delivers a message to the relay manager
    handled = _handled_by(relay)
    with pytest.raises(_Stop):
        relay._thread()
    assert handled == [{**emit, "host_id": "redis-host"}]

    redis._listen = lambda: iter([from_relay])
    handled_by_redis = _handled_by(redis)
    with pytest.raises(_Stop):
        redis._thread()
    assert handled_by_redis == [{**emit, "host_id": "relay-host"}]


def test_async_relay_decodes_what_async_redis_manager_publishes():
    async def scenario() -> list[dict]:
        link = _Link()
        relay = async_managers.RelayManager(link, channel="socketio", tag=TAG)
        redis = _AsyncCapturingRedisManager("redis://localhost:1/0", channel="socketio")
        for manager in (relay, redis):
            manager.set_server(socketio.AsyncServer())
        await redis.emit("chat", {"text": "hi"})
        link.on_deliver(redis.redis.published[0])
        handled: list[dict] = []

        async def record(message: dict) -> None:
            handled.append(message)
            raise _Stop

        relay._handle_emit = record
        with pytest.raises(_Stop):
            await relay._thread()
        return handled

    [message] = asyncio.run(scenario())
    assert message["event"] == "chat" and message["data"] == [{"text": "hi"}]
