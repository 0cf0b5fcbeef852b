"""Placement of new sessions (``--balance``) end to end: clients behind one address spread
over the workers, and a full or a stopped worker gets no new session while the others have
room, its own sessions still reaching it. (The order, a pure function:
tests/unit/cluster/test_placement.py.)
"""
from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import os
import re
import signal
import socket
import threading

import aiohttp
import pytest
import socketio

from tests.support.clients import connected, disconnect, run, source_address
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


HANDSHAKE = (b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: cluster\r\n"
             b"Connection: close\r\n\r\n")


def send_request(port: int, source: str, data: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), source_address=(source, 0))
    sock.sendall(data)
    return sock


def answer_of(sock: socket.socket, timeout: float = 30) -> bytes:
    """What ``sock`` receives until the server closes it (or ``timeout``)."""
    sock.settimeout(timeout)
    data = b""
    with sock, contextlib.suppress(OSError):
        while chunk := sock.recv(65536):
            data += chunk
    return data


async def retrying_client(url: str, source: str, errors: list, ready) -> int:
    """A python-socketio client that tries again after a failed connect, as apps use it:
    the pid of the worker that serves it once it is in."""
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(source, 0)))
    client = socketio.AsyncClient(http_session=session, reconnection_delay=0.2,
                                  reconnection_delay_max=0.2, randomization_factor=0)
    client.on("connect_error", lambda *data: errors.append(data))
    try:
        await client.connect(url, transports=["polling"], wait_timeout=10, retry=True)
        await asyncio.to_thread(ready.wait, 60)
        while not client.connected:
            await asyncio.sleep(0.05)
        return (await client.call("whoami", timeout=10))["pid"]
    finally:
        with contextlib.suppress(Exception):
            await disconnect(client)
        await session.close()


@pytest.mark.parametrize("overload", ["refuse", "queue"])
def test_new_sessions_get_a_503_while_every_worker_is_late(start_cluster, overload):
    cluster = start_cluster(workers=2, args=("--overload", overload, "--peek-timeout", "1"))
    owner = RawClient(tcp_from(cluster.port, source_address(60))).open()
    owner_pid = owner.call("whoami")["pid"]
    workers = cluster.worker_pids()
    errors: list = []
    resumed = threading.Event()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        for pid in workers:
            os.kill(pid, signal.SIGSTOP)
        try:
            for pid in workers:
                wait_for(lambda: re.search(rf"worker {pid} \(slot \d\) missed its heartbeats",
                                           cluster.log), 15, what="every worker seen late")
            page = send_request(cluster.port, source_address(61), b"GET / HTTP/1.0\r\n\r\n")
            handshake = send_request(cluster.port, source_address(62), HANDSHAKE)
            silent = send_request(cluster.port, source_address(64), b"")  # past --peek-timeout
            if overload == "refuse":  # while every worker is stopped, only the master answers
                refused = answer_of(handshake)
                assert refused.startswith(b"HTTP/1.1 503 ") and b"retry-after: 1" in refused
                wait_for(lambda: "new sessions are answered 503" in cluster.log, 10,
                         what="the warning")
                client = pool.submit(run, retrying_client(cluster.url, source_address(63),
                                                          errors, resumed))
                wait_for(lambda: len(errors) >= 2, 15, what="the client refused, and again")
                # One that sent nothing is not handed to a worker that is behind either (in
                # a storm they piled up in the workers to their fd limit): the master answers.
                assert answer_of(silent, timeout=20).startswith(b"HTTP/1.1 503 ")
        finally:
            for pid in workers:
                os.kill(pid, signal.SIGCONT)
            resumed.set()
        assert answer_of(page).startswith(b"HTTP/1.1 404 "), "a page is placed, never refused"
        if overload == "queue":
            assert b'0{"sid"' in answer_of(handshake), "placed anyway: answered once a worker runs"
            silent.close()
        else:  # its own retries bring it in once the workers run again
            assert client.result(timeout=60) in workers
    assert owner.call("whoami")["pid"] == owner_pid  # a session's requests still reach it
    cluster.stop()
    shed = int(re.search(r"routing totals: .*?, (\d+) shed", cluster.log).group(1))
    if overload == "refuse":
        assert shed >= 3  # the raw handshake and the client's first two attempts
    else:
        assert shed == 0
