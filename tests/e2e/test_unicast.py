"""Emits to one sid: kept in the process that owns it, or sent to that worker only.

Every test runs on the embedded relay and on Redis, with the eventlet and the asyncio
app. The tests only connect clients and emit, so each of those four cases starts one
cluster for the whole module (its tests run in one pytest process: an ``xdist_group``
per case); the workers it started must be gone when it stops. What went through the
queue is counted where it passes: the master's relay counters (read from its status
endpoint before and after a test; when the cluster stops, its logged totals must equal
the last reading, so nothing is relayed unseen after a test), or a subscriber on the
cluster's Redis channel.
"""
from __future__ import annotations

import json
import re
import time
import uuid

import pytest
import redis

from tests.support.clients import UNICAST_APP as APP, peers, received, run, tell
from tests.support.brokers import RedisNode
from tests.support.masters import ClusterProcess, shared_cluster
from tests.support.waiting import wait_for

ASYNC_APP = "tests.apps.asgi_unicast:app"


class QueueWatch:
    """Sees what a cluster publishes from now on: Redis messages, or the relay's counters."""

    def __init__(self, cluster: ClusterProcess, redis_server: RedisNode | None,
                 channel: str) -> None:
        self._cluster = cluster
        self._channel = channel
        self._redis = redis.Redis.from_url(redis_server.url) if redis_server else None
        self._pubsub = None
        if self._redis is not None:
            self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            self._pubsub.subscribe(channel)
        self._relay_before = relay_counters(cluster)

    def redis_messages(self) -> list[dict]:
        """Everything published since the watch began (a marker ends the list)."""
        marker = {"test_marker": uuid.uuid4().hex}
        self._redis.publish(self._channel, json.dumps(marker))
        messages = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            message = self._pubsub.get_message(timeout=1)  # None also for the subscribe reply
            if message is None:
                continue
            data = json.loads(message["data"])
            if data == marker:
                return messages
            messages.append(data)
        raise AssertionError("the marker never came back from Redis")

    def relay_totals(self) -> tuple[int, int]:
        """(broadcast, unicast) relay messages since the watch began; none dropped."""
        now = relay_counters(self._cluster)
        broadcast, unicast, dropped = (now[k] - self._relay_before[k]
                                       for k in ("broadcast", "unicast", "dropped"))
        assert dropped == 0
        return broadcast, unicast

    def close(self) -> None:
        if self._redis is not None:
            self._pubsub.close()
            self._redis.close()


def relay_counters(cluster: ClusterProcess) -> dict[str, int]:
    """The master's relay counters now, from its status endpoint."""
    return cluster.status()["relay"]


CASES = [("relay", APP), ("redis", APP), ("relay", ASYNC_APP), ("redis", ASYNC_APP)]
CASE_IDS = ["relay", "redis", "asyncio-relay", "asyncio-redis"]


@pytest.fixture(scope="module", params=[
    pytest.param(case, id=name, marks=pytest.mark.xdist_group(f"unicast-{name}"))
    for case, name in zip(CASES, CASE_IDS)])
def case_cluster(request, tmp_path_factory):
    """A three-worker cluster of the unicast app (eventlet or asyncio), on the relay or on
    Redis, for every test of the module; stopped by PID, and its workers with it."""
    adapter, app = request.param
    channel = f"t-unicast-{uuid.uuid4().hex[:8]}"
    redis_server = request.getfixturevalue("redis_server") if adapter == "redis" else None
    args = ("--adapter", redis_server.url, "--channel", channel) if redis_server else ()
    with shared_cluster(tmp_path_factory.mktemp("unicast") / "master.log", app, workers=3,
                        args=args) as cluster:
        cluster.adapter, cluster.channel, cluster.redis_server = adapter, channel, redis_server
        yield cluster
        last = relay_counters(cluster)
    found = re.search(r"relay totals: (\d+) broadcast, (\d+) unicast, (\d+) dropped", cluster.log)
    assert found, cluster.log
    assert [int(n) for n in found.groups()] == [last[k] for k in ("broadcast", "unicast", "dropped")]


@pytest.fixture
def cluster(case_cluster):
    """The module's cluster for this case, idle, with a watch that begins with the test."""
    wait_for(case_cluster.idle, 30, what="the last test's sessions to end")
    case_cluster.watch = QueueWatch(case_cluster, case_cluster.redis_server, case_cluster.channel)
    yield case_cluster
    case_cluster.watch.close()


def test_unicast_stays_in_its_worker_or_goes_to_the_owner_only(cluster):
    async def scenario():
        async with peers(cluster.url, 700) as (_everyone, groups):
            (a, b, *_), (c, *_), _third = groups
            for index in range(5):
                await tell(a, b.sids["/"], f"local-{index}")
            got = await received(b.got("told"), "local-4")
            assert got == [f"local-{index}" for index in range(5)]
            big = "x" * 200_000  # several channel packets on the relay
            for message in ("remote", big, "end"):
                await tell(a, c.sids["/"], message)
            assert await received(c.got("told"), "end") == ["remote", big, "end"]
            return b.sids["/"], c.sids["/"]

    local_sid, remote_sid = run(scenario())
    if cluster.adapter == "redis":
        published = cluster.watch.redis_messages()
        assert [m["room"] for m in published] == [remote_sid] * 3
        assert all(m["method"] == "emit" for m in published)
        assert local_sid not in json.dumps(published)
    else:
        assert cluster.watch.relay_totals() == (0, 3)


def test_broadcast_reaches_every_other_client_once_and_skips_the_sender(cluster):
    async def scenario():
        async with peers(cluster.url, 720) as (everyone, _groups):
            for peer in everyone:
                await peer.client.call("join", "all", timeout=10)
            shouter, others = everyone[0], everyone[1:]
            for message in ("first", "last"):
                data = {"room": "all", "message": message, "skip_me": True}
                assert await shouter.client.call("shout", data, timeout=10) == "ok"
            for peer in others:
                assert await received(peer.got("heard"), "last") == ["first", "last"]
            await tell(others[0], shouter.sids["/"], "end")
            await received(shouter.got("told"), "end")
            assert shouter.got("heard").empty()

    run(scenario())
    if cluster.adapter == "redis":
        published = cluster.watch.redis_messages()
        assert [(m["room"], m["data"][0]["message"]) for m in published
                if m["method"] == "emit" and m["event"] == "heard"] == [("all", "first"),
                                                                        ("all", "last")]
    else:
        assert cluster.watch.relay_totals()[0] == 2


def test_namespaces_are_respected(cluster):
    async def scenario():
        async with peers(cluster.url, 740, ("/", "/chat")) as (_everyone, groups):
            (a, b, *_), (c, *_), _third = groups
            for target in (b, c):  # same worker, other worker
                chat_sid = target.sids["/chat"]
                await tell(a, chat_sid, "in-chat", namespace="/chat")
                assert await received(target.got("told", "/chat"), "in-chat") == ["in-chat"]
                # The /chat sid means nothing in /: nothing arrives, on either namespace.
                await tell(a, chat_sid, "wrong-namespace", in_namespace="/")
                await tell(a, target.sids["/"], "end")
                assert await received(target.got("told"), "end") == ["end"]
                assert target.got("told", "/chat").empty()

    run(scenario())


def test_call_gets_the_answer_from_a_client_of_any_worker(cluster):
    async def scenario():
        async with peers(cluster.url, 760) as (_everyone, groups):
            (a, b, *_), (c, *_), _third = groups
            for peer in (b, c):
                peer.client.on("question", lambda question, pid=peer.pid: f"{question}->{pid}")
            for peer in (b, c):
                answer = await a.client.call("ask", {"to": peer.sids["/"], "question": "q"},
                                             timeout=20)
                assert answer == {"answer": f"q->{peer.pid}", "pid": a.pid}

    run(scenario())
    if cluster.adapter == "relay":
        # The remote question and its answer: one worker each way, never everyone.
        assert cluster.watch.relay_totals() == (0, 2)


def test_room_named_like_a_sid_of_another_worker_reaches_everyone(cluster):
    async def scenario():
        async with peers(cluster.url, 780) as (everyone, groups):
            (a, *_), (b, *_), _third = groups
            room = b.sids["/"][:3] + "x" * (len(b.sids["/"]) - 3)  # b's tag, not a sid
            for peer in everyone:
                await peer.client.call("join", room, timeout=10)
            assert await a.client.call("shout", {"room": room, "message": "hi"}, timeout=10) == "ok"
            for peer in everyone:
                assert await received(peer.got("heard"), "hi") == ["hi"]
            await a.client.call("shout", {"room": room, "message": "bye"}, timeout=10)
            for peer in everyone:
                assert await received(peer.got("heard"), "bye") == ["bye"]

    run(scenario())
