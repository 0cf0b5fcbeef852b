"""Placement of new sessions (``--balance``), and the workers it passes over.

The order is a pure function, tested on its own; end to end, clients behind one address
spread over the workers, and a full or a stopped worker gets no new session while the
others have room, its own sessions still reaching it.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import random
import re
import signal

import pytest

from tests.support.clients import connected, run, source_address
from cluster.intake import routing
from cluster.intake.placement import Candidate, order
from tests.support.waiting import wait_for
from tests.support.rawclient import RawClient, in_threads, tcp_from


# ------------------------------------------------------------------ order (pure)

def test_least_loaded_goes_to_the_fewest_sessions():
    candidates = [Candidate(0, 5, True), Candidate(1, 2, True), Candidate(2, 9, True)]
    assert order("least-loaded", b"ip", candidates, random.Random(1)) == [1, 0, 2]


def test_least_loaded_breaks_ties_at_random():
    candidates = [Candidate(slot, 3, True) for slot in range(4)]
    firsts = {order("least-loaded", b"ip", candidates, random.Random(seed))[0] for seed in range(60)}
    assert firsts == {0, 1, 2, 3}


def test_a_full_or_late_worker_comes_after_every_other():
    candidates = [Candidate(0, 0, False), Candidate(1, 7, True), Candidate(2, 1, False),
                  Candidate(3, 4, True)]
    assert order("least-loaded", b"ip", candidates, random.Random(2)) == [3, 1, 0, 2]
    for seed in range(20):
        assert set(order("random", b"ip", candidates, random.Random(seed))[:2]) == {1, 3}


def test_ip_is_the_consistent_hash_among_the_workers_with_room():
    slots = list(range(5))
    for index in range(50):
        key = f"10.0.{index}.1".encode()
        everyone = [Candidate(slot, 0, True) for slot in slots]
        assert order("ip", key, everyone, random.Random()) == routing.ranked(key, slots)
        best = routing.ranked(key, slots)[0]
        skipping = [Candidate(slot, 0, slot != best) for slot in slots]
        assert order("ip", key, skipping, random.Random()) == (
            [s for s in routing.ranked(key, slots) if s != best] + [best])


def test_none_with_room_still_gives_an_order():
    candidates = [Candidate(0, 3, False), Candidate(1, 1, False)]
    assert order("least-loaded", b"ip", candidates, random.Random()) == [1, 0]
    assert order("least-loaded", b"ip", [], random.Random()) == []


# ------------------------------------------------------------------- end to end

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


# ------------------------------------------------------------ the heartbeat's load

def test_heartbeat_payload_round_trips_and_rejects_garbage():
    from cluster.protocol import frames

    beat = frames.Heartbeat(12, 30)
    assert frames.Heartbeat.parse(beat.encode()) == beat
    assert frames.Heartbeat.parse(b"7") == frames.Heartbeat(7, 0)  # sessions only
    for bad in (b"", b" ", b"1 2 3 4", b"-1 2", b"1  2", b"x", b"1 2\n", b"9" * 13, "٣".encode()):
        with pytest.raises(frames.ProtocolError):
            frames.Heartbeat.parse(bad)
