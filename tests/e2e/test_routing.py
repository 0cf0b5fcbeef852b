"""Routing end to end: sessions that stick across address changes, proxies and restarts,
and hostile first bytes that harm nobody but their sender.

Most clients here speak Engine.IO long-polling over raw HTTP/1.0, one connection per
request, so every request is routed anew by the master (and can start with a PROXY
header); the others are python-socketio clients whose connections are never reused.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import ipaddress
import selectors
import signal
import socket
import struct
import threading
import time
from typing import AsyncIterator

import aiohttp
import psutil
import pytest
import socketio

from tests.support.clients import disconnect, run, source_address
from tests.support.masters import RUNTIME_TARGETS
from cluster.intake.pending import PENDING_LIMIT
from tests.support.waiting import wait_for
from tests.support.rawclient import RawClient, in_threads, tcp_from, unix_at
from cluster.protocol.sids import sid_prefix, tag_of

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
PEEK_TIMEOUT = 8
"""The ``--peek-timeout`` of the tests that hold connections: long, so that a busy machine
cannot blur "at once" and "after the timeout"."""
PEEK_WINDOW = PEEK_TIMEOUT / 2
"""Seconds within which a connection that need not wait is answered or closed."""
DEFER_ACCEPT = 1
"""Seconds the kernel holds a silent connection before the master accepts it (the master
counts them as part of the peek timeout)."""


# ------------------------------------------------------------------ raw clients

def proxy_v1(ip: str, port: int) -> bytes:
    kind = "TCP4" if ipaddress.ip_address(ip).version == 4 else "TCP6"
    dest = "127.0.0.1" if kind == "TCP4" else "::1"
    return f"PROXY {kind} {ip} {dest} {port} 5000\r\n".encode()


def proxy_v2(ip: str, port: int) -> bytes:
    source = ipaddress.ip_address(ip)
    dest = ipaddress.ip_address("127.0.0.1" if source.version == 4 else "::1")
    family = 0x11 if source.version == 4 else 0x21
    tlv = struct.pack("!BH", 0x04, 5) + b"hello"  # a NOOP TLV that must be skipped
    body = source.packed + dest.packed + struct.pack("!HH", port, 5000) + tlv
    return V2_SIGNATURE + bytes([0x21, family]) + struct.pack("!H", len(body)) + body


@contextlib.asynccontextmanager
async def polling_client(url: str, source: str) -> AsyncIterator[socketio.AsyncClient]:
    """A polling-only AsyncClient from ``source`` that opens a new connection per request."""
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(source, 0),
                                                                   force_close=True))
    client = socketio.AsyncClient(http_session=session, reconnection=False)
    try:
        await client.connect(url, transports=["polling"], wait_timeout=10)
        yield client
    finally:
        with contextlib.suppress(Exception):
            await disconnect(client)
        await session.close()


def sid_worker_differs(port: int, sid: str, first: int) -> str:
    """A loopback source (from index ``first`` on) whose IP lands on another worker than ``sid``."""
    for index in range(first, first + 40):
        source = source_address(index)
        if tag_of(RawClient(tcp_from(port, source)).handshake()) != tag_of(sid):
            return source
    raise AssertionError("every address hashes to the same worker")


# -------------------------------------------------------------- session routing

@pytest.mark.parametrize("loop", ["C", "Python"])
def test_both_hand_off_loops_route_alike(start_cluster, loop):
    """The master's hand-off loop in C (where it was compiled: everywhere the project
    installs with a C compiler) and in Python (``STICKY_CLUSTER_PURE_PYTHON=1``, or no
    compiler) route alike: each request of a session, each on a new connection, reaches
    the worker that owns it; new sessions spread over the workers; a request whose line
    comes in two writes waits for the rest (the C loop leaves it to the Python one)."""
    env = {"STICKY_CLUSTER_PURE_PYTHON": "1"} if loop == "Python" else None
    cluster = start_cluster(workers=3, env=env)
    assert f"(hand-off loop in {loop}" in cluster.log
    clients = [RawClient(tcp_from(cluster.port, source_address(70 + index))).open()
               for index in range(9)]
    owners = [client.call("whoami")["pid"] for client in clients]
    assert len(set(owners)) == 3, owners  # the least loaded first: all three take some
    cut = len("GET /socket.io/?EIO=4&transport=polling&sid=") + 5  # inside the sid
    clients[0].writes = lambda request: [request[:cut], request[cut:]]
    for _ in range(2):
        assert [client.call("whoami")["pid"] for client in clients] == owners


@pytest.mark.parametrize("app_target", [RUNTIME_TARGETS["eventlet"], RUNTIME_TARGETS["asgi"]],
                         ids=["eventlet", "asgi"])
def test_client_that_changes_address_keeps_its_session(start_cluster, app_target):
    """Routing by the sid is the master's alone: a worker sees a request of its session on
    a new connection, as it does every polling request; one green and one asyncio runtime."""
    cluster = start_cluster(app_target, workers=2)

    async def main():
        new_http = None
        try:
            async with polling_client(cluster.url, source_address(10)) as client:
                first = await client.call("whoami", timeout=10)
                new_source = await asyncio.to_thread(sid_worker_differs, cluster.port,
                                                     client.eio.sid, 11)
                new_http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(
                    local_addr=(new_source, 0), force_close=True))
                client.eio.http = new_http  # like a phone that moved from wifi to 4G
                later = [await client.call("whoami", timeout=10) for _ in range(5)]
                assert client.connected and client.transport() == "polling"
                return first, later
        finally:
            if new_http is not None:
                await new_http.close()

    first, later = run(main())
    assert {answer["pid"] for answer in later} == {first["pid"]}
    assert {answer["sid"] for answer in later} == {first["sid"]}

    # the same with raw requests, one of them cut inside the sid: the master waits for the line
    raw = RawClient(tcp_from(cluster.port, source_address(60))).open()
    owner = raw.call("whoami")["pid"]
    raw.connect = tcp_from(cluster.port, sid_worker_differs(cluster.port, raw.sid, 61))
    cut = len("GET /socket.io/?EIO=4&transport=polling&sid=") + 5  # inside the sid
    raw.writes = lambda request: [request[:cut], request[cut:]]
    assert [raw.call("whoami")["pid"] for _ in range(3)] == [owner] * 3


def test_route_ip_does_not_look_at_sids(start_cluster):
    cluster = start_cluster(workers=2, args=("--route", "ip"))
    raw = RawClient(tcp_from(cluster.port, source_address(70))).open()
    raw.call("whoami")
    raw.connect = tcp_from(cluster.port, sid_worker_differs(cluster.port, raw.sid, 71))
    status, body = raw.request("GET")
    assert status == 400 and "Invalid session" in body


def test_sessions_survive_a_rolling_restart(start_cluster):
    cluster = start_cluster(workers=3, args=("--graceful-timeout", "10"))

    async def main():
        async with contextlib.AsyncExitStack() as stack:
            clients = [await stack.enter_async_context(polling_client(cluster.url, source_address(80 + i)))
                       for i in range(12)]
            lost = []
            for client in clients:
                client.on("disconnect", lambda *args: lost.append(args))
            before = [await client.call("whoami", timeout=10) for client in clients]
            old_pids = cluster.worker_pids()
            cluster.signal(signal.SIGHUP)
            await asyncio.to_thread(cluster.wait_log, ") ready", 40, 6)  # 3 old + 3 new
            new_pids = cluster.worker_pids() - old_pids
            assert len(new_pids) == 3 and "draining" in cluster.log
            after = [await client.call("whoami", timeout=10) for client in clients]
            async with polling_client(cluster.url, source_address(99)) as fresh:
                newcomer = await fresh.call("whoami", timeout=10)
            assert not lost
            return before, after, old_pids, new_pids, newcomer

    before, after, old_pids, new_pids, newcomer = run(main())
    assert [(a["pid"], a["sid"]) for a in after] == [(b["pid"], b["sid"]) for b in before]
    assert {answer["pid"] for answer in after} <= old_pids
    assert newcomer["pid"] in new_pids
    assert "Invalid session" not in cluster.log


# ------------------------------------------------------------------- real IPs

def test_proxy_protocol_gives_the_real_address(start_cluster, tmp_path, app_target):
    path = str(tmp_path / "cluster.sock")
    cluster = start_cluster(app_target, workers=3, args=(
        "--proxy-protocol", "--bind", f"unix:{path}", "--balance", "ip"))  # new sessions by the real IP
    balancer = tcp_from(cluster.port, "127.0.0.1")
    ips = ([f"10.9.0.{i}" for i in range(1, 21)] + [f"10.9.1.{i}" for i in range(1, 11)]
           + [f"2001:db8::{i:x}" for i in range(1, 11)])

    def one(index_ip):
        index, ip = index_ip
        header = (proxy_v1 if index < 20 else proxy_v2)(ip, 40000 + index)
        ways = [lambda r: [header + r],  # HAProxy: header and request in one write
                lambda r: [header, r],  # nginx stream: the header first
                lambda r: [header[:9], header[9:] + r],  # a header cut in two
                lambda r: [header + r[:20], r[20:]]]  # a request line cut in two
        raw = RawClient(balancer, writes=ways[index % 4]).open()
        answers = [raw.call("whoami") for _ in range(2)]
        again = RawClient(balancer, writes=ways[0]).handshake()  # same IP, new session
        return ip, raw.sid, again, answers

    by_worker = collections.Counter()
    for ip, sid, again, answers in in_threads(one, list(enumerate(ips))):
        assert {a["remote_addr"] for a in answers} == {ip}
        assert len({a["pid"] for a in answers}) == 1, ip
        assert tag_of(again) == tag_of(sid), ip
        by_worker[answers[0]["pid"]] += 1
    assert len(by_worker) >= 3, by_worker

    # a balancer on the Unix socket (HAProxy "server s unix@… send-proxy")
    header = proxy_v2("192.0.2.77", 1234)
    raw = RawClient(unix_at(path), writes=lambda r: [header + r]).open()
    assert raw.call("whoami")["remote_addr"] == "192.0.2.77"


def test_forwarded_for_only_from_trusted_peers(start_cluster):
    cluster = start_cluster(workers=3, args=("--forwarded-allow-ips", "127.0.0.1, 10.255.0.0/16"))
    cookie = "Cookie: " + "c" * 3000 + "\r\n"

    def trusted(index):
        ip = f"10.8.0.{index + 1}"
        raw = RawClient(tcp_from(cluster.port, "127.0.0.1"),
                        headers=f"{cookie}X-Forwarded-For: 198.51.100.7, {ip}, 10.255.0.9\r\n")
        if index % 2:
            raw.writes = lambda r: [r[:1000], r[1000:]]  # headers that arrive in two parts
        raw.open()
        return ip, [raw.call("whoami") for _ in range(2)]

    by_worker = collections.Counter()
    for ip, answers in in_threads(trusted, range(24)):
        assert {a["remote_addr"] for a in answers} == {ip}
        assert len({a["pid"] for a in answers}) == 1
        by_worker[answers[0]["pid"]] += 1
    assert len(by_worker) >= 3, by_worker

    for index in range(4):
        source = source_address(120 + index)
        raw = RawClient(tcp_from(cluster.port, source), headers="X-Forwarded-For: 10.8.9.9\r\n").open()
        assert raw.call("whoami")["remote_addr"] == source


# -------------------------------------------------------------- hostile input

def connect_raw(port: int, source: str, data: bytes = b"") -> socket.socket:
    sock = socket.socket()
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    if data:
        sock.sendall(data)
    return sock


def answer_within(sock: socket.socket, timeout: float) -> tuple[bytes, float]:
    """What ``sock`` receives until EOF (or ``timeout``), and after how many seconds."""
    start = time.monotonic()
    sock.settimeout(timeout)
    data = b""
    with sock, contextlib.suppress(OSError):
        while chunk := sock.recv(65536):
            data += chunk
    return data, time.monotonic() - start


def closed_when(socks: list[socket.socket], until: float) -> dict[socket.socket, float]:
    """The monotonic time each of ``socks`` saw EOF (or a reset), polling until ``until``."""
    seen: dict[socket.socket, float] = {}
    with selectors.DefaultSelector() as selector:
        for sock in socks:
            selector.register(sock, selectors.EVENT_READ)
        while len(seen) < len(socks) and time.monotonic() < until:
            for key, _mask in selector.select(max(0.0, until - time.monotonic())):
                try:
                    data = key.fileobj.recv(4096)
                except OSError:
                    data = b""
                if not data:
                    seen[key.fileobj] = time.monotonic()
                    selector.unregister(key.fileobj)
    return seen


def test_hostile_first_bytes_harm_only_their_sender(start_cluster):
    cluster = start_cluster(workers=2, args=("--peek-timeout", str(PEEK_TIMEOUT)))
    port = cluster.port
    handshake = b"GET /socket.io/?EIO=4&transport=polling HTTP/1.0\r\n\r\n"

    # at once to a worker, by IP: a request line past the limit, garbage, forged sids
    long_line = b"GET /socket.io/?EIO=4&transport=polling&" + b"p=q&" * 1200 + b"x HTTP/1.0\r\n\r\n"
    forged = sid_prefix(200_000) + "A" * 20
    for data, expect in [
        (long_line, b"HTTP/1.1 200"),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256)) * 4, b""),
        (f"GET /socket.io/?EIO=4&transport=polling&sid={forged} HTTP/1.0\r\n\r\n".encode(), b"HTTP/1.1 400"),
        (b"GET /socket.io/?EIO=4&transport=polling&sid=../../etc HTTP/1.0\r\n\r\n", b"HTTP/1.1 400"),
        (b"GET /socket.io/?EIO=4&transport=polling&sid=" + b"\xff" * 30 + b" HTTP/1.0\r\n\r\n", b"HTTP/1.1 400"),
    ]:
        answer, took = answer_within(connect_raw(port, source_address(130), data), PEEK_TIMEOUT)
        assert answer.startswith(expect) and took < PEEK_WINDOW, (data[:40], answer[:60], took)

    # a half-closed request line: routed at once, not spun on
    sock = connect_raw(port, source_address(131), b"GET /socket.io/?EIO=4&transport=pol")
    sock.shutdown(socket.SHUT_WR)
    answer, took = answer_within(sock, PEEK_TIMEOUT)
    assert took < PEEK_WINDOW, took

    # silent, or a request line that stops: routed by IP when the peek timeout is up
    master = psutil.Process(cluster.pid)
    both = {source_address(132), source_address(133)}

    def held() -> set[str]:  # by address: another connection's fd closing late cannot blur it
        return {c.raddr.ip for c in master.net_connections(kind="tcp")
                if c.raddr and c.raddr.ip in both}

    start = time.monotonic()
    silent = connect_raw(port, source_address(132))
    stalled = connect_raw(port, source_address(133), b"GET /socket.io/?EIO=4&transport=polling")
    wait_for(lambda: held() == both, PEEK_WINDOW, what="the master to accept both")
    wait_for(lambda: not held(), PEEK_TIMEOUT + 30, what="the master to hand off both")
    assert time.monotonic() - start > PEEK_TIMEOUT - DEFER_ACCEPT, "handed off before the peek timeout"
    silent.sendall(handshake)
    stalled.sendall(b" HTTP/1.0\r\n\r\n")
    for sock in (silent, stalled):
        answer, _took = answer_within(sock, 30)
        assert answer.startswith(b"HTTP/1.1 200") and b'0{"sid"' in answer, answer[:80]

    assert RawClient(tcp_from(port, source_address(134))).open().call("whoami")["pid"]


def test_flood_of_idle_connections_is_bounded(start_cluster):
    cluster = start_cluster(workers=2, args=("--peek-timeout", str(PEEK_TIMEOUT)))
    master = psutil.Process(cluster.pid)
    RawClient(tcp_from(cluster.port, source_address(140))).open().call("whoami")
    rss_before, fds_before = master.memory_info().rss, master.num_fds()
    flood: list[socket.socket] = []
    fds_during: list[int] = []
    sampling = threading.Event()

    def sample_fds() -> None:  # every few ms while the flood is accepted: transients count too
        deadline = time.monotonic() + 60
        while not sampling.is_set() and time.monotonic() < deadline:
            fds_during.append(master.num_fds())
            time.sleep(0.002)

    sampler = threading.Thread(target=sample_fds, daemon=True)
    sampler.start()
    try:
        for index in range(1500):  # 300 stalled request lines, then 1,200 silent sockets
            data = b"GET /socket.io/?EIO=4&transport=pol" if index < 300 else b""
            flood.append(connect_raw(cluster.port, f"127.3.{index // 250}.{1 + index % 250}", data))
        cluster.wait_log("connections wait for their first bytes", timeout=30)
        cpu, window_start = sum(master.cpu_times()[:2]), time.monotonic()
        raw = RawClient(tcp_from(cluster.port, source_address(141))).open()  # others are served
        assert raw.call("whoami")["pid"]
        time.sleep(1)  # the window in which the master's CPU is measured, well inside the hold
        sampling.set()
        sampler.join()
        cpu_idle = sum(master.cpu_times()[:2]) - cpu
        window = time.monotonic() - window_start
        wait_for(lambda: master.num_fds() <= fds_before + 5, PEEK_TIMEOUT + 30,
                 what="the flood to be handed off")
        rss_after = master.memory_info().rss
    finally:
        sampling.set()
        for sock in flood:
            sock.close()
    growth = (rss_after - rss_before) / 2**20
    print(f"\nmaster RSS {rss_before / 2**20:.1f} MB -> {rss_after / 2**20:.1f} MB "
          f"(+{growth:.1f} MB) for 1,500 idle connections; fds {fds_before} -> {max(fds_during)}; "
          f"CPU {cpu_idle:.2f} s in {window:.1f} s while serving one client during the flood")
    assert max(fds_during) <= fds_before + PENDING_LIMIT + 5
    assert growth < 20
    assert cpu_idle < 0.2 * window, "the master spins on the connections it holds"
    assert RawClient(tcp_from(cluster.port, source_address(142))).open().call("whoami")["pid"]


def test_proxy_protocol_refuses_what_is_not_a_header(start_cluster):
    cluster = start_cluster(workers=2, args=("--proxy-protocol", "--peek-timeout", str(PEEK_TIMEOUT)))
    port = cluster.port
    at_once = [connect_raw(port, "127.0.0.1", data) for data in (
        b"PROXY TCP4 10.0.0.1.5 127.0.0.1 1 2\r\nGET / HTTP/1.0\r\n\r\n",  # malformed
        b"PROXY TCP9 10.0.0.1 127.0.0.1 1 2\r\n",
        b"PROXY TCP4 10.0.0.1 127.0.0.1 1 2\n",  # no CR
        b"PROXY UNKNOWN " + b"x" * 120,  # longer than a v1 line
        V2_SIGNATURE + b"\x31\x11\x00\x0c" + bytes(12),  # v2, bad version
        V2_SIGNATURE + b"\x21\x11\x00\x04" + bytes(4),  # v2, length shorter than its addresses
        b"GET /socket.io/?EIO=4&transport=polling HTTP/1.0\r\n\r\n",  # no header at all
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
    )]
    closed = closed_when(at_once, time.monotonic() + PEEK_WINDOW)
    assert len(closed) == len(at_once), "a bad header was not closed at once"
    opened: dict[socket.socket, float] = {}
    for index, data in enumerate([b"", b"PROXY TCP4 10.0.0.1 ", V2_SIGNATURE + b"\x21\x11\x00\x0c" + bytes(4)]
                                 + [b""] * 1100):  # silent, truncated v1 and v2, then a flood
        opened[connect_raw(port, f"127.4.{index // 250}.{1 + index % 250}", data)] = time.monotonic()
    socks = list(opened)
    try:
        closed = closed_when(socks, time.monotonic() + PEEK_TIMEOUT + 30)
        assert len(closed) == len(socks), f"{len(socks) - len(closed)} connections never closed"
        after = [closed[sock] - opened[sock] for sock in socks]
        assert all(seconds > PEEK_TIMEOUT - DEFER_ACCEPT for seconds in after[:3]), after[:3]
        early = sum(seconds < PEEK_WINDOW for seconds in after[3:])  # past the bound: at once
        # all 1,103 wait at once but the bound's worth: the rest are closed at once
        assert 0 < early <= len(socks) - PENDING_LIMIT, early
    finally:
        for sock in at_once + socks:
            sock.close()
    raw = RawClient(tcp_from(port, "127.0.0.1"), writes=lambda r: [proxy_v1("10.1.2.3", 9) + r])
    assert raw.open().call("whoami")["remote_addr"] == "10.1.2.3"
