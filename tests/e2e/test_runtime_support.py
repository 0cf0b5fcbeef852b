"""The table of what each runtime enforces (cluster/protocol/support.py), walked end to end.

Every cell, worker-side option × server, gets a probe against a real cluster of that
server's chat app: one where the option holds shows its effect as a client or an operator
sees it; one the table marks refused shows the master's one-line refusal (``--check``),
before any worker is forked. The parametrization is the table's rows and columns: a new
option or server without a probe fails ``test_the_walk_is_the_table``
(tests/unit/protocol/test_runtime_support.py).

One cluster per server (an ``xdist_group`` each) serves the whole walk, with tight
settings (:data:`SETTINGS`), the session's redis-server as its adapter and its own channel.
The HUP probe of ``--graceful-timeout`` replaces the workers, so it runs last.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import re
import signal
import socket
import time
import uuid
from http.client import HTTPConnection
from typing import Callable

import pytest
import websockets.asyncio.client

from tests.support import rawclient
from tests.support.clients import connected, run, source_address, wait_upgraded
from cluster.protocol.sids import tag_of
from cluster.protocol.support import SERVERS, SUPPORT
from cluster.setup.options import BY_NAME
from tests.support.masters import RUNTIME_TARGETS, cli, shared_cluster
from tests.support.orphans import SESSION_PIDS
from tests.support.ports import free_port
from tests.support.waiting import wait_for
from tests.e2e.test_limits_asyncio import wait_for_packet
from tests.e2e.test_tls_proxy import FORWARDED, seen
from tests.e2e.test_worker_limits import closed_by_server
from workers.limits import FRAME_COST

TARGETS = {server: RUNTIME_TARGETS[server] for server in SERVERS}
"""The chat app each server serves (``asgi``: a ``socketio.ASGIApp`` under uvicorn's protocols)."""

HEADER_TIMEOUT = 1.0
KEEPALIVE_TIMEOUT = 8.0
"""Longer than uvicorn's own default (5 s) by more than :data:`KEEPALIVE_MARGIN`, so that a
close at that default shows, and than the header probe's wait (aiohttp closes a connection
without a whole head at it)."""
KEEPALIVE_MARGIN = 2.0
"""How much sooner than the keep-alive timeout the probe may see the close: the server's
clock starts when it sends the answer, the probe's once it has read it (a busy machine)."""
WORKER_CONNECTIONS = 6
THREADS = 6
WEBSOCKET_RATE = 250_000
GRACEFUL_TIMEOUT = 2.0
DRAIN_SPREAD = 4.0
ACCESS_LOG_FORMAT = "walk %(m)s %(U)s %(q)s %(s)s transport=%(transport)s slot=%(slot)s"
MAX_MESSAGE = 1_000_000
"""python-socketio's ``max_http_buffer_size`` in the chat apps (its default)."""

SETTINGS = {
    "header_timeout": str(HEADER_TIMEOUT),
    "keepalive_timeout": str(KEEPALIVE_TIMEOUT),
    "worker_connections": str(WORKER_CONNECTIONS),
    "threads": str(THREADS),
    "websocket_rate": str(WEBSOCKET_RATE),
    "graceful_timeout": str(GRACEFUL_TIMEOUT),
    "drain_spread": str(DRAIN_SPREAD),
    "access_log_format": ACCESS_LOG_FORMAT,
    "forwarded_allow_ips": "127.0.0.46",
    "websocket_deflate": None,
}
"""Each worker-side option's value in the walk's clusters (the adapter, the channel and the
access log file are each cluster's own), away from its default (None: a flag, given); an
option the table refuses for a server is left out of its cluster, and its probe asks for
the refusal."""

LAST = ("graceful_timeout", "drain_spread")
"""Their probes replace the workers (HUP): they run after the others, in this order."""
ROWS = sorted(SUPPORT, key=lambda row: LAST.index(row) + 1 if row in LAST else 0)


# ------------------------------------------------------------------------------ fixtures

@pytest.fixture(scope="module")
def server(request) -> str:
    """The server (a column of the table) whose cells this test walks."""
    return request.param


@pytest.fixture(scope="module")
def walk_cluster(server, redis_server, tmp_path_factory):
    """Two workers of ``server``'s chat app with every worker-side option set; its master
    (and so every worker it forks, the HUP's included) belongs to the session meanwhile."""
    workdir = tmp_path_factory.mktemp(f"walk-{server}")
    access_log = workdir / "access.log"
    channel = f"walk-{server}-{uuid.uuid4().hex[:8]}"
    args = [*(arg for name, value in SETTINGS.items() if SUPPORT[name][server].holds
              for arg in (BY_NAME[name].long_flag, value) if arg is not None),
            "--access-log", str(access_log), "--adapter", redis_server.url, "--channel", channel,
            "--peek-timeout", "0.5"]
    with shared_cluster(workdir / "master.log", TARGETS[server], workers=2, args=args) as cluster:
        SESSION_PIDS.add(cluster.pid)
        cluster.access_log, cluster.channel, cluster.redis = access_log, channel, redis_server
        try:
            yield cluster
        finally:
            SESSION_PIDS.discard(cluster.pid)


# ------------------------------------------------------------------------- the probes

def header_timeout(cluster, server: str) -> None:
    """A silent connection and one that stops in its headers are closed at the header
    timeout, unanswered: before the keep-alive timeout (aiohttp closes a connection without
    a whole head at its ``keepalive_timeout``), long before the default (60 s)."""
    opened = time.monotonic()
    silent = socket.create_connection(("127.0.0.1", cluster.port), timeout=10,
                                      source_address=("127.0.0.41", 0))
    half = socket.create_connection(("127.0.0.1", cluster.port), timeout=10,
                                    source_address=("127.0.0.42", 0))
    half.sendall(b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n")
    try:
        for sock in (silent, half):
            sock.setblocking(False)
        closed = closed_by_server([silent, half], KEEPALIVE_TIMEOUT - 1)
        held = time.monotonic() - opened
        assert closed == 2, f"held past {held:.1f} s"
        assert held >= HEADER_TIMEOUT
    finally:
        silent.close()
        half.close()


def keepalive_timeout(cluster, server: str) -> None:
    """An idle keep-alive connection is closed at the keep-alive timeout: not before (not at
    the header timeout, nor at uvicorn's 5 s default), and not never."""
    http = HTTPConnection("127.0.0.1", cluster.port, timeout=30, source_address=("127.0.0.43", 0))
    try:
        http.request("GET", "/socket.io/?EIO=4&transport=polling")
        response = http.getresponse()
        assert response.status == 200 and response.read().startswith(b"0{")
        idle_from = time.monotonic()
        http.sock.settimeout(60)
        assert http.sock.recv(1) == b"", "the idle connection got bytes"
        idle = time.monotonic() - idle_from
    finally:
        http.close()
    assert KEEPALIVE_TIMEOUT - KEEPALIVE_MARGIN <= idle < 40, f"closed after {idle:.1f} s idle"


def websocket_rate(cluster, server: str) -> None:
    """100 calls sent at once on one websocket cost more than the burst (a message of the
    size limit), so the last answer cannot come before the rest was paid for at
    ``--websocket-rate`` (each frame costs 16 KB more than its bytes); unpaced, they take a
    fraction of a second."""
    calls = 100
    sock = rawclient.websocket(cluster.port, "127.0.0.44", timeout=60)
    try:
        sock.sendall(rawclient.frame(1, b"40"))
        wait_for_packet(sock, lambda payload: payload.startswith(b"40"))
        call = b'421["echo",1]'
        least = (calls * (len(call) + FRAME_COST) - (MAX_MESSAGE + FRAME_COST)) / WEBSOCKET_RATE
        started = time.monotonic()
        sock.sendall(rawclient.frame(1, call) * calls)
        acks = 0
        while acks < calls:
            acks += wait_for_packet(sock, lambda payload: payload == b"431[1]")
        took = time.monotonic() - started
    finally:
        sock.close()
    assert took >= 0.8 * least, f"{calls} calls answered in {took:.2f} s: not paced " \
                                f"(at least {least:.1f} s at {WEBSOCKET_RATE} bytes/s)"


def worker_connections(cluster, server: str) -> None:
    """``--worker-connections`` websockets fill one worker: the master passes it over (new
    sessions go to the other worker), and a request routed to it by its sid is answered
    ``503``."""
    fill_one_worker(cluster, SUPPORT["worker_connections"][server].how, WORKER_CONNECTIONS,
                    f"(--worker-connections {WORKER_CONNECTIONS})")


def threads(cluster, server: str) -> None:
    """``--threads`` websockets take every thread of one worker: the master passes it over,
    and a request routed to it by its sid is answered ``503`` once it has waited for a
    thread."""
    fill_one_worker(cluster, SUPPORT["threads"][server].how, THREADS,
                    "every thread busy (--threads)")


def fill_one_worker(cluster, how: str, count: int, full_says: str) -> None:
    """Fill one worker with ``count`` websockets; check that the master says it is full
    (``full_says`` in the line) and places new sessions on the other worker, and what a
    request routed to the full worker gets: ``503`` if ``how`` (the table's cell) says so,
    else an answer once a websocket ends."""
    full_before = cluster.log.count(" is full: ")
    room_before = cluster.log.count(" has room again ")
    sids = sids_of_one_worker(cluster.port, count)
    held = []
    try:
        for index, sid in enumerate(sids):
            sock, _ = rawclient.upgrade(cluster.port, source_address(60 + index), sid, timeout=30)
            sock.sendall(rawclient.frame(1, b"2probe"))
            assert rawclient.read_frame(sock) == (1, b"3probe")
            sock.sendall(rawclient.frame(1, b"5"))
            held.append(sock)
        cluster.wait_log(" is full: ", timeout=30, count=full_before + 1)
        assert full_says in cluster.log
        full_tag = tag_of(sids[0])
        for index in range(4):
            sid = rawclient.handshake(cluster.port, source_address(70 + index), timeout=30)
            assert tag_of(sid) != full_tag, "a new session was placed on the full worker"
        routed_there = (f"GET /socket.io/?EIO=4&transport=polling&sid={sids[0]} HTTP/1.1\r\n"
                        "Host: x\r\nConnection: close\r\n\r\n").encode()
        with socket.create_connection(("127.0.0.1", cluster.port), timeout=30,
                                      source_address=(source_address(80), 0)) as extra:
            extra.sendall(routed_there)
            if "503" in how:
                assert rawclient.read_to_eof(extra).startswith(b"HTTP/1.1 503 ")
            else:
                extra.settimeout(1)
                with pytest.raises(TimeoutError):
                    extra.recv(1)  # not served while the worker is full
                held.pop().close()
                extra.settimeout(30)
                assert rawclient.read_to_eof(extra).startswith(b"HTTP/1.1 ")
    finally:
        for sock in held:
            sock.close()
    cluster.wait_log(" has room again ", timeout=30, count=room_before + 1)


def sids_of_one_worker(port: int, count: int) -> list[str]:
    """Polling handshakes until ``count`` sessions live on one worker: their sids."""
    by_tag: dict[int, list[str]] = {}
    for index in range(8 * count):
        sid = rawclient.handshake(port, source_address(40 + index), timeout=30)
        by_tag.setdefault(tag_of(sid), []).append(sid)
        if len(by_tag[tag_of(sid)]) == count:
            return by_tag[tag_of(sid)]
    raise AssertionError(f"no worker got {count} of {8 * count} sessions")


def adapter(cluster, server: str) -> None:
    """A room broadcast from a client of one worker reaches a client of the other through
    the redis-server: a subscriber of the channel there sees it pass."""
    redis = cluster.redis.client()
    watch = redis.pubsub()
    watch.subscribe(cluster.channel)
    marker = f"walk-{uuid.uuid4().hex}"
    try:
        assert watch.get_message(timeout=10)["type"] == "subscribe"

        async def main() -> list[dict]:
            async with contextlib.AsyncExitStack() as stack:
                heard, pids = [], set()
                for index in range(10):
                    client = await stack.enter_async_context(
                        connected(cluster.url, source_address(90 + index)))
                    pid = (await client.call("join", "walk-room", timeout=10))["pid"]
                    if pid in pids:
                        continue
                    pids.add(pid)
                    future = asyncio.get_running_loop().create_future()
                    client.on("heard", lambda data, f=future: f.done() or f.set_result(data))
                    heard.append((client, future))
                    if len(pids) == 2:
                        break
                assert len(pids) == 2, "every client landed on one worker"
                shouter = heard[0][0]
                assert await shouter.call("shout", {"room": "walk-room", "message": marker},
                                          timeout=10) == "ok"
                return await asyncio.wait_for(asyncio.gather(*(f for _, f in heard)), 10)

        results = run(main())
        assert {data["message"] for data in results} == {marker}
        assert len({data["from_pid"] for data in results}) == 1
        passed = wait_for(lambda: _published(watch, marker), 10,
                          what="the broadcast on the channel in redis")
        assert passed
    finally:
        watch.close()
        redis.close()


def _published(watch, marker: str) -> bool:
    message = watch.get_message(timeout=0.2)
    return bool(message and message["type"] == "message" and marker.encode() in message["data"])


def channel(cluster, server: str) -> None:
    """Both workers listen on the channel given, in the redis-server given (its
    ``PUBSUB NUMSUB``), and none on the default one."""
    with contextlib.closing(cluster.redis.client()) as redis:
        wait_for(lambda: dict(redis.pubsub_numsub(cluster.channel))[cluster.channel.encode()] == 2,
                 30, what="two subscribers of the channel (one per worker)")
        assert cluster.channel.encode() in redis.pubsub_channels()
        default = BY_NAME["channel"].default
        assert dict(redis.pubsub_numsub(default))[default.encode()] == 0


def access_log(cluster, server: str) -> None:
    """A request's line is in the access log file, written by the worker that served it."""
    marker = access_log_request(cluster)
    wait_for(lambda: marker in cluster.access_log.read_text(), 20,
             what="the request's line in the access log file")
    assert marker not in cluster.log, "the line went to the master's log too"


def access_log_format(cluster, server: str) -> None:
    """That line is in the format given, atom for atom."""
    marker = access_log_request(cluster)
    line = wait_for(lambda: next((line for line in cluster.access_log.read_text().splitlines()
                                  if marker in line), None), 20, what="the request's line")
    assert re.fullmatch(rf"walk GET /socket\.io/ EIO=4&transport=polling&walk={marker} 200 "
                        r"transport=polling slot=[01]", line), line


def forwarded_allow_ips(cluster, server: str) -> None:
    """``X-Forwarded-Proto``/``-Host`` set the scheme and host the app sees, from the trusted
    peer only."""
    _, trusted_url, _ = run(seen(f"http://127.0.0.1:{cluster.port}", "127.0.0.46", FORWARDED))
    assert trusted_url == "https://chat.example.com"
    _, untrusted_url, _ = run(seen(f"http://127.0.0.1:{cluster.port}", "127.0.0.47", FORWARDED))
    assert untrusted_url == f"http://127.0.0.1:{cluster.port}"


def access_log_request(cluster) -> str:
    """A handshake with a marker in its query string: the marker."""
    marker = uuid.uuid4().hex
    answer = rawclient.http(cluster.port, f"GET /socket.io/?EIO=4&transport=polling&walk={marker} "
                                          "HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                                          .encode(), "127.0.0.45", timeout=30)
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:100]
    return marker


def graceful_timeout(cluster, server: str) -> None:
    """HUP with a websocket client on: its worker is replaced, keeps the session while it
    drains (the client's calls are answered there), and closes it at the graceful timeout,
    not at the default (30 s), so that the client reconnects elsewhere."""

    async def main() -> float:
        async with connected(cluster.url, "127.0.0.46") as client:
            await wait_upgraded(client)
            ended = asyncio.Event()
            client.on("disconnect", ended.set)
            pid = (await client.call("whoami", timeout=10))["pid"]
            hup = time.monotonic()
            cluster.signal(signal.SIGHUP)
            await cluster.until_log(f"worker {pid} (slot {cluster.slot_of(pid)}) draining",
                                    timeout=120)
            assert (await client.call("whoami", timeout=10))["pid"] == pid
            drained = time.monotonic()
            await asyncio.wait_for(ended.wait(), 20)
            assert time.monotonic() - drained < 20
            await cluster.until_log(f"worker {pid} closes ", timeout=10)
            return time.monotonic() - hup

    assert run(main()) >= GRACEFUL_TIMEOUT
    cluster.wait_log("rolling restart done", timeout=120)


def drain_spread(cluster, server: str) -> None:
    """HUP with two clients of this probe alone on a worker (fresh: the graceful probe's HUP
    came before): the sessions left at the graceful timeout are closed evenly over
    ``--drain-spread``, so the two end half of it apart (at the default, 30 s, 15 s apart)."""

    async def main() -> tuple[int, int, list[float]]:
        async with contextlib.AsyncExitStack() as stack:
            pids: list[int] = []
            ended: dict[int, list[float]] = collections.defaultdict(list)
            waits = []
            for index in range(3):  # two workers: two clients of one among three at most
                client = await stack.enter_async_context(
                    connected(cluster.url, source_address(110 + index)))
                await wait_upgraded(client)
                pid = (await client.call("whoami", timeout=10))["pid"]
                done = asyncio.Event()
                client.on("disconnect", lambda *_reason, p=pid, d=done: (
                    ended[p].append(time.monotonic()), d.set()))
                pids.append(pid)
                waits.append(done)
                if pids.count(pid) == 2:
                    break
            cluster.signal(signal.SIGHUP)
            await asyncio.wait_for(asyncio.gather(*(done.wait() for done in waits)), 60)
            return pid, pids.count(pid), ended[pid]

    rolls = cluster.log.count("rolling restart done")
    pid, sessions, times = run(main())
    assert sessions == len(times) == 2
    gap = max(times) - min(times)
    # Evenly over the spread: half of it apart. Ignored, the master would kill the worker
    # (graceful timeout + spread + 5 s) before its default spread closed the second one.
    assert DRAIN_SPREAD / 2 - 1 <= gap < DRAIN_SPREAD + 2, f"closed {gap:.1f} s apart"
    assert f"worker {pid} closes 2 sessions at the graceful timeout" in cluster.log, \
        "the worker had other sessions: the gap says less"
    cluster.wait_log("rolling restart done", timeout=120, count=rolls + 1)


def websocket_deflate(cluster, server: str) -> None:
    """A client that offers permessage-deflate (as every browser does) is granted it, and
    its compressed call is answered, compressed, through it."""
    async def call() -> tuple[str, dict]:
        url = f"ws://127.0.0.1:{cluster.port}/socket.io/?EIO=4&transport=websocket"
        async with websockets.asyncio.client.connect(
                url, compression="deflate", local_addr=("127.0.0.47", 0), open_timeout=30,
                ping_interval=None) as ws:
            granted = ws.response.headers.get("Sec-WebSocket-Extensions", "")
            assert (await ws.recv()).startswith("0{")
            await ws.send("40")
            assert (await ws.recv()).startswith("40")
            await ws.send('421["whoami"]')
            while not (answer := await ws.recv()).startswith("431"):
                if answer == "2":
                    await ws.send("3")
            return granted, json.loads(answer[3:])[0]

    granted, me = run(call(), timeout=60)
    assert granted.startswith("permessage-deflate"), granted
    assert isinstance(me["pid"], int), me


PROBES: dict[str, Callable[..., None]] = {
    "adapter": adapter, "channel": channel, "worker_connections": worker_connections,
    "threads": threads,
    "graceful_timeout": graceful_timeout, "drain_spread": drain_spread, "access_log": access_log,
    "access_log_format": access_log_format, "header_timeout": header_timeout,
    "forwarded_allow_ips": forwarded_allow_ips,
    "keepalive_timeout": keepalive_timeout, "websocket_rate": websocket_rate,
    "websocket_deflate": websocket_deflate,
}
"""A probe per row of the table: it shows the option's effect on a cluster of one server."""


def refused(option: str, server: str) -> None:
    """The master refuses the option, in one line, before it forks any worker."""
    flag, value = BY_NAME[option].long_flag, SETTINGS[option]
    result = cli("run", TARGETS[server], flag, value, "--check")
    assert result.returncode == 1, result
    assert result.stderr.startswith(f"Error: {flag} is not for {SERVERS[server]} workers: ")
    assert result.stderr.count("\n") == 1, result.stderr


# ---------------------------------------------------------------------------- the walk

@pytest.mark.parametrize("server", [
    pytest.param(server, marks=pytest.mark.xdist_group(f"support-{server}"))
    for server in SERVERS], indirect=True)
@pytest.mark.parametrize("row", ROWS)
def test_cell(row, server, request):
    if row in SUPPORT and not SUPPORT[row][server].holds:
        refused(row, server)
        return
    PROBES[row](request.getfixturevalue("walk_cluster"), server)


@pytest.mark.parametrize("check", [False, True], ids=["run", "check"])
def test_an_adapter_the_runtime_has_no_manager_for_is_refused_before_any_fork(check):
    """An ``amqp://`` adapter for an asyncio app: one line naming the URL without its
    password, exit 1, nothing bound, no worker started (before: each worker failed to
    boot, and the master stopped after three)."""
    port = free_port()
    url = "amqp://guest:secret@127.0.0.1:1//"
    result = cli("run", TARGETS["asgi"], "--bind", f"127.0.0.1:{port}", "--workers", "2",
                 "--adapter", url, *(["--check"] if check else []))
    assert result.returncode == 1, result
    assert result.stderr == ("Error: --adapter amqp://guest:***@127.0.0.1:1//: asyncio workers "
                             "have no amqp manager; they take a redis URL\n")
    assert "booting" not in result.stdout + result.stderr
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0
