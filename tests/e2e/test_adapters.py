"""How broadcasts cross workers: the app's own manager, Flask-SocketIO, and Redis outages."""
from __future__ import annotations

import asyncio
import contextlib
import time

from tests.support.brokers import RedisNode, broadcast_stream, plain_args
from tests.support.clients import (connected, room_broadcast_reaches_every_worker, run,
                                   source_address)
from tests.support.ports import free_port


def test_flask_socketio_app_from_a_factory(start_cluster):
    cluster = start_cluster("tests.apps.flaskapp:create_app()", workers=3)
    listeners, senders, shouter = run(room_broadcast_reaches_every_worker([cluster.url], 12))
    assert len(listeners) >= 2
    assert senders == {shouter}


def test_app_with_its_own_pubsub_manager_keeps_it(start_cluster, redis_server):
    cluster = start_cluster("tests.apps.ownmanager:sio", workers=3,
                            env={"TEST_REDIS_URL": redis_server.url})
    assert "keeping the app's own RedisManager" in cluster.log
    # Built before the fork, the manager would share one host_id across workers and
    # drop every other worker's broadcast; each worker must get its own.
    listeners, senders, shouter = run(room_broadcast_reaches_every_worker([cluster.url], 12))
    assert len(listeners) >= 2
    assert senders == {shouter}


def test_redis_outage_harms_only_broadcasts_and_they_resume(start_cluster, tmp_path):
    port = free_port()
    redis = RedisNode(tmp_path, plain_args(port), port).start()
    try:
        cluster = start_cluster(workers=2, args=("--adapter", redis.url))
        pids_before = cluster.worker_pids()
        run(_outage_scenario(cluster.url, redis))
        assert cluster.worker_pids() == pids_before, "workers were restarted"
        assert cluster.proc.poll() is None
    finally:
        redis.stop()


async def _outage_scenario(url: str, redis: RedisNode) -> None:
    async with contextlib.AsyncExitStack() as stack:
        clients = []
        for index in range(8):
            client = await stack.enter_async_context(connected(url, source_address(600 + index)))
            inbox: asyncio.Queue = asyncio.Queue()
            client.on("heard", inbox.put_nowait)
            answer = await client.call("join", "outage", timeout=10)
            clients.append((client, inbox, answer["pid"]))
        assert len({pid for *_rest, pid in clients}) == 2

        redis.stop()
        # Every client is still served, and a new client still connects.
        for client, _inbox, pid in clients:
            assert (await client.call("whoami", timeout=10))["pid"] == pid
        async with connected(url, source_address(650)) as late:
            assert (await late.call("whoami", timeout=10))["pid"]

        redis.start()
        shouter, _inbox, shouter_pid = clients[0]
        others = [(inbox, pid) for _c, inbox, pid in clients if pid != shouter_pid]
        # The listener re-subscribes with a backoff: shout until the other worker hears.
        for attempt in range(40):
            for inbox, _pid in others:
                while not inbox.empty():
                    inbox.get_nowait()
            await shouter.call("shout", {"room": "outage", "message": f"m{attempt}"}, timeout=10)
            try:
                got = await asyncio.wait_for(others[0][0].get(), 1.0)
            except asyncio.TimeoutError:
                continue
            if got["message"] == f"m{attempt}":
                break
        else:
            raise AssertionError("broadcasts did not resume after Redis came back")


def test_redis_outage_gap_and_lost_broadcasts_are_bounded(start_cluster, tmp_path):
    """Redis down for 2 s under a stream of broadcasts: the figures of docs/adapters.md."""
    port = free_port()
    redis = RedisNode(tmp_path, plain_args(port), port).start()

    def outage() -> None:
        redis.stop()
        time.sleep(2)
        redis.start()

    try:
        cluster = start_cluster(workers=2, args=("--adapter", redis.url))
        pids_before = cluster.worker_pids()
        figures = run(broadcast_stream(cluster.url, outage, first_source=680))
        print(f"\nRedis outage of 2 s: {figures}")
        assert figures.resumed, f"broadcasts did not flow again after Redis came back: {figures}"
        assert figures.disconnects == 0, figures
        assert figures.gap < 30, figures  # the listener backs off 1, 2, 4 … s
        assert figures.slowest_emit < 5, figures
        assert cluster.worker_pids() == pids_before, "workers crashed or were restarted"
    finally:
        redis.stop()


def test_valkey_url_joins_the_workers(start_cluster, redis_server):
    """valkey:// takes the valkey client; Valkey speaks Redis's protocol, so redis-server serves."""
    url = redis_server.url.replace("redis://", "valkey://")
    cluster = start_cluster(workers=3, args=("--adapter", url, "--channel", "t-valkey"))
    listeners, senders, shouter = run(room_broadcast_reaches_every_worker([cluster.url], 12))
    assert len(listeners) >= 2
    assert senders == {shouter}
