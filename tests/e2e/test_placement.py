"""Placement of new sessions (``--balance``) end to end: clients behind one address spread
over the workers, and a full or a stopped worker gets no new session while the others have
room, its own sessions still reaching it. (The order, a pure function:
tests/unit/cluster/test_placement.py.)
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import re
import signal

from tests.support.clients import connected, run, source_address
from tests.support.rawclient import RawClient, in_threads, tcp_from
from tests.support.waiting import wait_for


def test_clients_behind_one_address_spread_over_the_workers(start_cluster):
    cluster = start_cluster(workers=4)
    source = source_address(30)

    def one(_index):
        raw = RawClient(tcp_from(cluster.port, source)).open()
        return [raw.call("whoami")["pid"] for _ in range(3)]

    by_worker = collections.Counter()
    for pids in in_threads(one, range(40)):
        assert len(set(pids)) == 1, pids  # sticky
        by_worker[pids[0]] += 1
    assert len(by_worker) >= 3 and max(by_worker.values()) <= 16, by_worker


def test_balance_ip_keeps_one_address_on_one_worker(start_cluster):
    cluster = start_cluster(workers=2, args=("--balance", "ip"))
    source = source_address(31)
    pids = {RawClient(tcp_from(cluster.port, source)).open().call("whoami")["pid"]
            for _ in range(8)}
    assert len(pids) == 1


def test_bad_balance_is_one_line(start_cluster):
    cluster = start_cluster(workers=1, args=("--balance", "nearest"), wait=False)
    assert cluster.wait(timeout=30) != 0
    assert "Invalid value for '--balance'" in cluster.log and "Traceback" not in cluster.log


def test_a_full_worker_gets_no_new_clients(start_cluster):
    cluster = start_cluster(workers=2, args=("--balance", "ip", "--worker-connections", "4"))
    source = source_address(40)  # every new client of this address hashes to one worker

    async def main():
        async with contextlib.AsyncExitStack() as stack:
            first = []
            for _ in range(4):
                client = await stack.enter_async_context(
                    connected(cluster.url, source, transports=["websocket"]))
                first.append((await client.call("whoami", timeout=10))["pid"])
            assert len(set(first)) == 1  # one connection each, all on the hashed worker
            await asyncio.to_thread(wait_for, lambda: re.search(
                rf"worker {first[0]} \(slot \d\) is full", cluster.log), 15, what="full")
            later = []
            for _ in range(3):  # before: they wait on the full worker and time out
                client = await stack.enter_async_context(
                    connected(cluster.url, source, transports=["websocket"]))
                later.append((await client.call("whoami", timeout=10))["pid"])
            return first[0], later

    full, later = run(main())
    assert full not in later and len(set(later)) == 1, (full, later)
    cluster.stop()
    assert re.search(r"routing totals: .*?, [1-9]\d* past a full worker", cluster.log)


def test_a_stopped_worker_gets_no_new_sessions_but_keeps_its_own(start_cluster):
    cluster = start_cluster(workers=3)
    owner = RawClient(tcp_from(cluster.port, source_address(50))).open()
    stopped = owner.call("whoami")["pid"]
    os.kill(stopped, signal.SIGSTOP)
    try:
        wait_for(lambda: re.search(rf"worker {stopped} \(slot \d\) missed its heartbeats",
                                   cluster.log), 15, what="the stopped worker seen late")

        def one(index):
            raw = RawClient(tcp_from(cluster.port, source_address(51 + index))).open()
            return raw.call("whoami")["pid"]

        pids = in_threads(one, range(12))
        assert stopped not in pids and len(set(pids)) == 2, pids
    finally:
        os.kill(stopped, signal.SIGCONT)
    assert owner.call("whoami")["pid"] == stopped  # its own session still goes to it
    cluster.stop()
    assert re.search(r"routing totals: .*?, [1-9]\d* past a late worker", cluster.log)
