"""Stops and drains as a deploy sees them: TERM drains, INT is quick, and the sessions a
drain leaves are closed spread over ``--drain-spread``, not in one instant.

Real masters, forked workers and scores of Socket.IO clients on websocket, each from its
own loopback address. Every assertion on time is a lower bound (nothing may happen before
the graceful timeout) or a spread that a busy machine can only widen.
"""
from __future__ import annotations

import asyncio
import collections
import re
import signal
import socket
import time
import urllib.request

import pytest

from cluster.protocol.sids import tag_of
from tests.support import rawclient
from tests.support.clients import Stream, connected, crowd, disconnect, run, source_address
from tests.support.masters import RUNTIME_TARGETS, gone
from tests.support.ports import free_port


def refused(port: int) -> bool:
    """Whether a connection to 127.0.0.1:``port`` is refused (nothing listens)."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


async def all_ended(members, timeout: float) -> None:
    """Wait until every member's session has ended; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while any(member.ended_at is None for member in members):
        assert time.monotonic() < deadline, (
            f"{sum(m.ended_at is None for m in members)} sessions still open after {timeout} s")
        await asyncio.sleep(0.1)


def test_term_drains_the_sessions_until_the_graceful_timeout_then_exits_0(start_cluster):
    grace, spread = 6.0, 2.0
    cluster = start_cluster(workers=2, args=("--graceful-timeout", str(grace),
                                             "--drain-spread", str(spread)))
    workers = cluster.worker_pids()

    async def main():
        loop = asyncio.get_running_loop()
        async with crowd(cluster.url, 3000, 80) as members:
            leavers, callers = members[:10], members[10:20]
            term_at = time.monotonic()
            cluster.signal(signal.SIGTERM)
            await cluster.until_log("graceful stop")
            closed = await loop.run_in_executor(None, refused, cluster.port)
            # the drain serves the sessions it keeps, and lets them end by themselves
            answers = await asyncio.gather(*(m.client.call("whoami", timeout=10)
                                             for m in callers))
            for member in leavers:
                await disconnect(member.client)
            code = await loop.run_in_executor(None, cluster.wait, 90)
            await all_ended(members, 30)
        return term_at, closed, answers, code, members

    term_at, closed, answers, code, members = run(main(), timeout=240)
    assert closed, "the master still accepted after TERM"
    assert {answer["pid"] for answer in answers} <= workers
    assert code == 0, cluster.log
    stayed = members[10:]
    cut_early = [m.index for m in stayed if m.ended_at < term_at + grace]
    assert not cut_early, f"sessions cut before the graceful timeout: {cut_early}"
    assert all(m.ended_at < term_at + grace for m in members[:10])  # they left by themselves
    assert all(gone(pid) for pid in workers)
    assert "graceful stop: draining 2 workers" in cluster.log
    assert "closes" in cluster.log and f"over {spread:g} s" in cluster.log


def test_int_stops_at_once_and_cuts_the_sessions(start_cluster):
    cluster = start_cluster(workers=2, args=("--graceful-timeout", "120"))
    workers = cluster.worker_pids()

    async def main():
        loop = asyncio.get_running_loop()
        async with crowd(cluster.url, 3900, 40) as members:
            int_at = time.monotonic()
            cluster.signal(signal.SIGINT)
            code = await loop.run_in_executor(None, cluster.wait, 60)
            await all_ended(members, 30)
        return code, time.monotonic() - int_at

    code, elapsed = run(main())
    assert code == 0, cluster.log
    assert elapsed < 100, "the master waited for the graceful timeout"
    assert all(gone(pid) for pid in workers)
    assert "fast stop" in cluster.log


@pytest.mark.long
@pytest.mark.parametrize("runtime", ["eventlet", "gevent", "asgi", "threading"])
def test_a_hup_closes_the_sessions_left_spread_over_the_window(start_cluster, runtime):
    """120 websocket clients, a HUP: each old worker keeps its sessions for the graceful
    timeout, then closes them over the spread; the closes of one worker span most of the
    window instead of one instant (about 60 closes over 4 one-second buckets, each
    bucket holding at most half of them)."""
    grace, spread = 2.0, 4.0
    cluster = start_cluster(RUNTIME_TARGETS[runtime], workers=2, args=("--graceful-timeout", str(grace),
                                             "--drain-spread", str(spread)))

    async def main():
        async with crowd(cluster.url, 3300, 120) as members:
            owners = await asyncio.gather(*(m.client.call("whoami", timeout=30)
                                             for m in members))
            hup_at = time.monotonic()
            cluster.signal(signal.SIGHUP)
            await cluster.until_log("rolling restart done", timeout=120)
            await all_ended(members, 120)
        return hup_at, [owner["pid"] for owner in owners], members

    hup_at, owners, members = run(main(), timeout=300)
    assert all(m.ended_at >= hup_at + grace for m in members), "cut before the graceful timeout"
    ends = collections.defaultdict(list)
    for owner, member in zip(owners, members):
        ends[owner].append(member.ended_at)
    assert len(ends) == 2
    for pid, times in ends.items():
        span = max(times) - min(times)
        busiest = max(collections.Counter(int(t - min(times)) for t in times).values())
        assert span >= spread / 2, f"worker {pid} closed {len(times)} sessions in {span:.2f} s"
        assert busiest <= len(times) / 2, f"worker {pid}: {busiest} of {len(times)} in 1 s"


def test_a_hup_with_roll_after_drained_rolls_the_next_worker_once_the_old_one_has_exited(
        start_cluster):
    """``--roll-after drained``: slot 1's new worker starts only once slot 0's old worker,
    holding sessions for the graceful timeout, has drained and exited; so only one worker's
    clients come back at a time."""
    cluster = start_cluster(workers=2, args=("--roll-after", "drained", "--graceful-timeout",
                                             "3", "--drain-spread", "0"))
    (first_old,) = re.findall(r"worker (\d+) \(slot 0\) booting \(start\)", cluster.log)

    async def main():
        async with crowd(cluster.url, 3500, 20) as members:
            owners = {answer["pid"] for answer in await asyncio.gather(
                *(m.client.call("whoami", timeout=30) for m in members))}
            cluster.signal(signal.SIGHUP)
            await cluster.until_log("rolling restart done", timeout=120)
        return owners

    owners = run(main(), timeout=200)
    assert len(owners) == 2  # both old workers held sessions through the graceful timeout
    lines = cluster.log.splitlines()
    exited = next(i for i, line in enumerate(lines)
                  if f"worker {first_old} (slot 0) drained and exited" in line)
    second_new = next(i for i, line in enumerate(lines)
                      if "(slot 1) booting (rolling restart)" in line)
    assert exited < second_new, "\n".join(lines)
    assert ("rolling restart of 2 workers, one at a time: each next once the old one has "
            "drained, up to 8 s each (--roll-after drained)") in cluster.log


@pytest.mark.parametrize("loop", ["C", "Python"])
def test_during_a_roll_new_sessions_go_to_the_workers_started_since(start_cluster, loop):
    """While slot 0's old worker drains (``--roll-after drained``), slot 1's old worker,
    whose turn comes next, gets no new session though it holds fewer: its clients would
    lose their sessions twice. Both hand-off loops (C, and Python's)."""
    env = {"STICKY_CLUSTER_PURE_PYTHON": "1"} if loop == "Python" else None
    cluster = start_cluster(workers=2, env=env, args=(
        "--roll-after", "drained", "--graceful-timeout", "60", "--drain-spread", "0"))
    assert f"(hand-off loop in {loop}" in cluster.log
    old_tags = {tag_of(rawclient.handshake(cluster.port, source_address(index), timeout=30))
                for index in range(8)}
    assert len(old_tags) == 2  # each old worker holds polling sessions: slot 0's drain waits
    cluster.signal(signal.SIGHUP)
    cluster.wait_log("(slot 0) ready after", timeout=60, count=2)
    new_tags = [tag_of(rawclient.handshake(cluster.port, source_address(20 + index), timeout=30))
                for index in range(12)]
    assert len(set(new_tags)) == 1 and not set(new_tags) & old_tags, (new_tags, old_tags)
    assert "(slot 1) booting (rolling restart)" not in cluster.log  # slot 0 still drains


def test_a_leaking_worker_is_recycled_by_memory_without_refusing_a_connection(start_cluster):
    status_port = free_port()
    cluster = start_cluster("tests.apps.leaky:sio", workers=2, args=(
        "--max-worker-memory", "150", "--graceful-timeout", "3", "--drain-spread", "1",
        "--status-bind", f"127.0.0.1:{status_port}"))
    workers = cluster.worker_pids()

    async def main():
        stream = Stream(cluster.url, first_index=3700, attempt_timeout=15)
        stream.start()
        async with connected(cluster.url, source_address(3690)) as leaker:
            leaky = (await leaker.call("leak", 200, timeout=30))["pid"]
            await cluster.until_log(f"recycling worker {leaky} ", timeout=60)
            await cluster.until_log("drained and exited", timeout=60)
        await asyncio.sleep(1)  # the stream goes on past the switch
        return leaky, await stream.stop()

    leaky, attempts = run(main(), timeout=180)
    failed = [a.error for a in attempts if a.error]
    assert not failed, f"{len(failed)} of {len(attempts)} connections failed: {failed[:3]}"
    served_by = {a.pid for a in attempts}
    replacement = (cluster.worker_pids() - workers).pop()
    assert len(attempts) >= 5 and replacement in served_by
    assert leaky in workers and gone(leaky)
    assert f"worker {leaky} (slot {cluster.slot_of(leaky)}) drained and exited" in cluster.log
    with urllib.request.urlopen(f"http://127.0.0.1:{status_port}/metrics", timeout=10) as answer:
        metrics = answer.read().decode()
    assert 'sticky_cluster_restarts_total{reason="memory"} 1.0' in metrics
