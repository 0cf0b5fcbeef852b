"""The Socket.IO Admin UI (``sio.instrument()``) on the cluster: it sees every worker.

The tests only connect clients: each case (adapter, runtime) starts one two-worker
cluster for both (an ``xdist_group`` per case).
"""
from __future__ import annotations

import asyncio
import contextlib

import pytest

from tests.support.clients import connected, run, source_address
from tests.support.masters import shared_cluster

ADMIN_APPS = {"eventlet": "tests.apps.admin:sio", "asgi": "tests.apps.asgi_admin:app",
              "threading": "tests.apps.threading_admin:sio"}
"""An app that calls ``sio.instrument()`` at import, per runtime: a Server, an AsyncServer."""


CASES = [(adapter, runtime) for adapter in ("relay", "redis") for runtime in ADMIN_APPS]


@pytest.fixture(scope="module", params=[
    pytest.param(case, id="-".join(case), marks=pytest.mark.xdist_group("admin-" + "-".join(case)))
    for case in CASES])
def cluster(request, tmp_path_factory):
    """Two workers of the case's admin app, on the relay or on the session's Redis."""
    adapter, runtime = request.param
    args = ("--adapter", request.getfixturevalue("redis_server").url) if adapter == "redis" else ()
    with shared_cluster(tmp_path_factory.mktemp("admin") / "master.log", ADMIN_APPS[runtime],
                        workers=2, args=args) as cluster:
        yield cluster


def test_admin_ui_sees_every_worker(cluster):
    workers = cluster.worker_pids()
    stats_pids, socket_ids, client_pids = run(_watch(cluster.url, workers))
    assert stats_pids == workers, "server_stats did not come from every worker"
    assert set(client_pids.values()) == workers
    assert set(client_pids) <= socket_ids, "the Admin UI missed sockets of some worker"


def test_an_admin_that_connects_late_gets_the_sockets_of_every_worker(cluster):
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
