"""The Socket.IO Admin UI (``sio.instrument()``) on the cluster: it sees every worker."""
from __future__ import annotations

import asyncio
import contextlib

import pytest

from tests.support.clients import connected, run, source_address

ADMIN_APPS = {"eventlet": "tests.apps.admin:sio", "asgi": "tests.apps.asgi_admin:app",
              "threading": "tests.apps.threading_admin:sio"}
"""An app that calls ``sio.instrument()`` at import, per runtime: a Server, an AsyncServer."""


@pytest.mark.parametrize("runtime", list(ADMIN_APPS))
@pytest.mark.parametrize("adapter", ["relay", "redis"])
def test_admin_ui_sees_every_worker(start_cluster, redis_server, adapter, runtime):
    args = ("--adapter", redis_server.url) if adapter == "redis" else ()
    cluster = start_cluster(ADMIN_APPS[runtime], workers=2, args=args)
    workers = cluster.worker_pids()
    stats_pids, socket_ids, client_pids = run(_watch(cluster.url, workers))
    assert stats_pids == workers, "server_stats did not come from every worker"
    assert set(client_pids.values()) == workers
    assert set(client_pids) <= socket_ids, "the Admin UI missed sockets of some worker"


@pytest.mark.parametrize("runtime", list(ADMIN_APPS))
@pytest.mark.parametrize("adapter", ["relay", "redis"])
def test_an_admin_that_connects_late_gets_the_sockets_of_every_worker(start_cluster, redis_server,
                                                                      adapter, runtime):
    args = ("--adapter", redis_server.url) if adapter == "redis" else ()
    cluster = start_cluster(ADMIN_APPS[runtime], workers=2, args=args)
    client_pids, socket_ids = run(_late_admin(cluster.url, cluster.worker_pids()))
    assert set(client_pids.values()) == cluster.worker_pids()
    assert set(client_pids) <= socket_ids, "the late admin missed sockets of some worker"


async def _late_admin(url: str, workers: set[int]) -> tuple[dict[str, int], set[str]]:
    """Clients on every worker first, then an admin: it must not wait for their pings (25 s)."""
    socket_ids: set[str] = set()

    def sockets(listed: list) -> None:
        socket_ids.update(sock["id"] for sock in listed)

    def connected_one(sock: dict, _when: str) -> None:
        socket_ids.add(sock["id"])

    async with contextlib.AsyncExitStack() as stack:
        client_pids: dict[str, int] = {}
        for index in range(40):
            if set(client_pids.values()) == workers:
                break
            client = await stack.enter_async_context(connected(url, source_address(950 + index)))
            answer = await client.call("whoami", timeout=10)
            client_pids[answer["sid"]] = answer["pid"]
        await stack.enter_async_context(connected(url, source_address(949), namespaces=["/admin"],
                                                  handlers={"all_sockets": sockets,
                                                            "socket_connected": connected_one}))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10  # well under the 25 s ping interval
        while not set(client_pids) <= socket_ids and loop.time() < deadline:
            await asyncio.sleep(0.1)
        return client_pids, set(socket_ids)


async def _watch(url: str, workers: set[int]) -> tuple[set[int], set[str], dict[str, int]]:
    """Connect an Admin UI client, then clients of every worker; return what the admin saw."""
    stats_pids: set[int] = set()
    socket_ids: set[str] = set()
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(connected(
            url, source_address(900), namespaces=["/admin"],
            handlers={"server_stats": lambda stats: stats_pids.add(stats["pid"]),
                      "socket_connected": lambda sock, _when: socket_ids.add(sock["id"])}))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while stats_pids != workers and loop.time() < deadline:  # idle workers report too
            await asyncio.sleep(0.1)
        client_pids: dict[str, int] = {}
        for index in range(40):
            if set(client_pids.values()) == workers:
                break
            client = await stack.enter_async_context(connected(url, source_address(901 + index)))
            answer = await client.call("whoami", timeout=10)
            client_pids[answer["sid"]] = answer["pid"]
        deadline = loop.time() + 30
        while (stats_pids != workers or not set(client_pids) <= socket_ids) \
                and loop.time() < deadline:
            await asyncio.sleep(0.1)
        return set(stats_pids), set(socket_ids), client_pids
