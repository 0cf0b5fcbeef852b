"""The worker's limits on the asyncio runtimes (ASGI on uvicorn's protocol, aiohttp), against
a real cluster: each test plays the attack first, then checks what a user would see.

A compressed websocket bomb and a header bomb leave the worker's memory where it was,
its sockets closed and another client served meanwhile; silent and half-sent connections
are closed at the header timeout; a POST over the body limit is answered 413 without its
body; idle keep-alive connections close at the keep-alive timeout; a websocket that sends
faster than ``--websocket-rate`` is read more slowly; a full worker answers 503, is passed
over, and serves again once its silent connections are gone.
"""
from __future__ import annotations

import base64
import contextlib
import os
import select
import socket
import struct
import threading
import time
import zlib
from http.client import HTTPConnection
from typing import Callable, Iterator

import psutil
import pytest

from tests.support import rawclient
from tests.support.masters import RUNTIME_TARGETS
from tests.support.waiting import wait_for
from tests.e2e.test_worker_limits import closed_by_server, open_silent, pytest_raises_closed

TARGETS = [pytest.param(RUNTIME_TARGETS["asgi"], id="asgi"),
           pytest.param(RUNTIME_TARGETS["aiohttp"], id="aiohttp")]
SMALL_LIMIT_TARGETS = [pytest.param("tests.apps.asyncio_limits:asgi", id="asgi"),
                       pytest.param("tests.apps.asyncio_limits:aiohttp", id="aiohttp")]
"""The same apps with a 100,000-byte message limit (a short websocket burst)."""

MB = 1_000_000
MEMORY_MARGIN = 100 * MB
"""How far above its start a worker's RSS may go under an attack."""


def the_worker(cluster) -> psutil.Process:
    (pid,) = wait_for(lambda: cluster.worker_pids() or None, 30, what="the worker")
    return psutil.Process(pid)


@contextlib.contextmanager
def rss_peak(proc: psutil.Process) -> Iterator[dict[str, int]]:
    """Samples ``proc``'s RSS every 20 ms while the block runs (and 2 s after): start, peak."""
    seen = {"start": proc.memory_info().rss}
    seen["peak"] = seen["start"]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            with contextlib.suppress(psutil.Error):
                seen["peak"] = max(seen["peak"], proc.memory_info().rss)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        yield seen
        time.sleep(2)
    finally:
        done.set()
        sampler.join(10)


@contextlib.contextmanager
def another_client(port: int) -> Iterator[list[float]]:
    """Handshakes from 127.0.0.30 while the block runs: the time each took (failures raise)."""
    took: list[float] = []
    failures: list[BaseException] = []
    done = threading.Event()

    def probe() -> None:
        while not done.is_set() and len(took) < 1000:
            started = time.monotonic()
            try:
                rawclient.handshake(port, "127.0.0.30", timeout=30)
            except (OSError, ValueError) as exc:
                failures.append(exc)
                return
            took.append(time.monotonic() - started)
            done.wait(0.05)

    thread = threading.Thread(target=probe)
    thread.start()
    try:
        yield took
    finally:
        done.set()
        thread.join(60)
    assert not failures, f"another client failed meanwhile: {failures[0]!r}"


# ------------------------------------------------------------- permessage-deflate bomb

def deflate_websocket(port: int, source: str) -> socket.socket:
    """A session upgraded to a websocket that negotiated permessage-deflate (probe done)."""
    sid = rawclient.handshake(port, source)
    sock = socket.create_connection(("127.0.0.1", port), timeout=30, source_address=(source, 0))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(f"GET /socket.io/?EIO=4&transport=websocket&sid={sid} HTTP/1.1\r\nHost: x\r\n"
                 f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                 "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: permessage-deflate; "
                 "client_no_context_takeover; server_no_context_takeover\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        byte = sock.recv(1)
        assert byte, f"no upgrade: {head!r}"
        head += byte
    assert head.startswith(b"HTTP/1.1 101") and b"permessage-deflate" in head.lower(), head
    sock.sendall(rawclient.frame(1, b"2probe"))
    assert read_message(sock) == b"3probe"
    sock.sendall(rawclient.frame(1, b"5"))
    return sock


def read_message(sock: socket.socket) -> bytes:
    """One server frame's payload, inflated if it is compressed (RSV1)."""
    first, second = sock.recv(1)[0], sock.recv(1)[0]
    size = second & 127
    if size == 126:
        size = struct.unpack("!H", rawclient._exactly(sock, 2))[0]
    elif size == 127:
        size = struct.unpack("!Q", rawclient._exactly(sock, 8))[0]
    payload = rawclient._exactly(sock, size)
    if first & 0x40:
        payload = zlib.decompressobj(-15).decompress(payload + b"\x00\x00\xff\xff")
    return payload


def compressed_frame(message: bytes) -> bytes:
    """A text frame carrying ``message`` deflated (RSV1 set), as a browser would send it."""
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    payload = deflate.compress(message) + deflate.flush(zlib.Z_SYNC_FLUSH)
    frame = rawclient.frame(1, payload[:-4])  # without the 00 00 ff ff tail (RFC 7692)
    return bytes([frame[0] | 0x40]) + frame[1:]


@pytest.mark.parametrize("target", [
    *TARGETS, pytest.param(RUNTIME_TARGETS["eventlet"], id="eventlet")])  # eventlet's own bound
def test_a_deflate_bomb_is_refused_before_it_is_inflated(start_cluster, target):
    """10 websockets x 5 messages, each about 15 KB on the wire and 15 MB inflated."""
    cluster = start_cluster(target, workers=1, args=("--websocket-deflate",))
    proc = the_worker(cluster)
    bomb = compressed_frame(b"4" + b"a" * 15_000_000)
    sockets = [deflate_websocket(cluster.port, f"127.0.0.{2 + index}") for index in range(10)]
    with rss_peak(proc) as rss, another_client(cluster.port) as answered:
        for sock in sockets:
            with contextlib.suppress(OSError):
                for _ in range(5):
                    sock.sendall(bomb)
        closed = closed_websockets(sockets, 30)
    grew = rss["peak"] - rss["start"]
    print(f"\n{len(bomb) * 50 / 1e3:.0f} KB of compressed messages: RSS "
          f"{rss['start'] / MB:.0f} -> peak {rss['peak'] / MB:.0f} MB; {closed} of 10 closed; "
          f"another client's slowest handshake {max(answered, default=0):.2f} s")
    assert grew < MEMORY_MARGIN, f"the worker's RSS grew {grew / MB:.0f} MB"
    assert closed == 10, f"{10 - closed} bombing websockets are still open"
    assert answered, "no other client was answered meanwhile"
    for sock in sockets:
        sock.close()


def closed_websockets(sockets: list[socket.socket], timeout: float) -> int:
    """Read every socket (dropping what comes) until the server closes it; how many it closed."""
    open_ = list(sockets)
    deadline = time.monotonic() + timeout
    while open_ and time.monotonic() < deadline:
        readable, _, _ = select.select(open_, [], [], 0.2)
        for sock in readable:
            try:
                data = sock.recv(1 << 16)
            except OSError:
                data = b""
            if not data:
                open_.remove(sock)
    return len(sockets) - len(open_)


# ------------------------------------------------------------------------ header bomb

def header_bomb(port: int, source: str, total: int) -> tuple[int, bytes]:
    """Send a request head of ``total`` bytes of header lines, stopping when the server
    answers or closes; the bytes sent and the answer."""
    chunk = (b"X-Pad: " + b"a" * 8000 + b"\r\n") * 125  # 1 MB of 8 KB header lines
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=30,
                                  source_address=(source, 0)) as sock:
        try:
            sock.sendall(b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n")
            while sent < total and not select.select([sock], [], [], 0)[0]:
                sock.sendall(chunk)
                sent += len(chunk)
            return sent, rawclient.read_to_eof(sock)
        except OSError:
            return sent, b""


@pytest.mark.parametrize("target", TARGETS)
def test_a_header_bomb_is_answered_431_and_closed(start_cluster, target):
    """10 connections x 100 MB of header lines; and a plain 800 KB head."""
    cluster = start_cluster(target, workers=1)
    proc = the_worker(cluster)
    results: list[tuple[int, bytes]] = []
    with rss_peak(proc) as rss, another_client(cluster.port) as answered:
        bombers = [threading.Thread(target=lambda index=index: results.append(
            header_bomb(cluster.port, f"127.0.0.{2 + index}", 100 * MB))) for index in range(10)]
        for thread in bombers:
            thread.start()
        for thread in bombers:
            thread.join(300)
    grew = rss["peak"] - rss["start"]
    print(f"\nheader bomb: RSS {rss['start'] / MB:.0f} -> peak {rss['peak'] / MB:.0f} MB; "
          f"sent {sum(sent for sent, _ in results) / MB:.0f} MB; answers "
          f"{sorted({answer[:12] for _, answer in results})}")
    assert grew < MEMORY_MARGIN, f"the worker's RSS grew {grew / MB:.0f} MB"
    assert len(results) == 10
    for sent, answer in results:
        assert sent < 100 * MB or answer.startswith((b"HTTP/1.1 431", b"HTTP/1.1 400")), \
            "a 100 MB head was read to its end"
    assert answered, "no other client was answered meanwhile"

    head = b"".join(b"X-Pad-%d: %s\r\n" % (index, b"a" * 7000) for index in range(115))
    answer = rawclient.http(cluster.port, b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\n"
                                          b"Host: x\r\nConnection: close\r\n" + head + b"\r\n",
                           timeout=30)
    assert answer.startswith((b"HTTP/1.1 431", b"HTTP/1.1 400")), answer[:100]


# ----------------------------------------------------------- header and keep-alive timeouts

@pytest.mark.parametrize("target", TARGETS)
def test_silent_and_half_sent_connections_are_closed_at_the_header_timeout(start_cluster,
                                                                          target):
    cluster = start_cluster(target, workers=1, args=("--header-timeout", "3",
                                                     "--peek-timeout", "0.5"))
    started = time.monotonic()  # none can be closed before started + 3 s
    held = open_silent(cluster.port, 300)
    for index in range(100):
        sock = socket.create_connection(("127.0.0.1", cluster.port), timeout=10,
                                        source_address=(f"127.0.0.{10 + index % 8}", 0))
        sock.sendall(b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n")
        sock.setblocking(False)
        held.append(sock)
    try:
        assert rawclient.handshake(cluster.port, "127.0.0.30")  # served meanwhile
        early = closed_by_server(held, 1.0)
        assert early == 0 or time.monotonic() - started >= 3, "closed before the header timeout"
        assert closed_by_server(held, 60) == len(held)
        assert rawclient.handshake(cluster.port, "127.0.0.30")
    finally:
        for sock in held:
            sock.close()

    with socket.create_connection(("127.0.0.1", cluster.port), timeout=10) as sock:
        sock.sendall(b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\n")
        started = time.monotonic()
        with pytest_raises_closed():
            for _ in range(60):  # a header byte every half second, well under 3 s apart
                sock.sendall(b"X")
                time.sleep(0.5)
        assert time.monotonic() - started < 25


@pytest.mark.parametrize("target", TARGETS)
def test_an_idle_keepalive_connection_is_closed_at_the_keepalive_timeout(start_cluster, target):
    """8 s: longer than uvicorn's own default (5 s), far shorter than aiohttp's (3,630 s).
    Closed no sooner than 6 s after the probe read its answer (the server's clock starts
    when it sends it, a busy machine may read it late): the option holds, not a default."""
    cluster = start_cluster(target, workers=1, args=("--keepalive-timeout", "8"))
    http = HTTPConnection("127.0.0.1", cluster.port, timeout=30)
    http.request("GET", "/socket.io/?EIO=4&transport=polling")
    response = http.getresponse()
    assert response.status == 200 and response.read().startswith(b"0{")
    sock = http.sock
    idle_from = time.monotonic()
    sock.settimeout(60)
    assert sock.recv(1) == b"", "the idle connection got bytes"
    idle = time.monotonic() - idle_from
    print(f"\nidle keep-alive connection closed after {idle:.1f} s")
    http.close()
    assert idle >= 6, f"closed after {idle:.1f} s idle: a default, not the option"


# ----------------------------------------------------------------------------- body size

@pytest.mark.parametrize("target", TARGETS)
def test_an_oversized_post_is_answered_413_without_its_body(start_cluster, target):
    cluster = start_cluster(target, workers=1)
    sid = rawclient.handshake(cluster.port)
    with socket.create_connection(("127.0.0.1", cluster.port), timeout=30) as sock:
        sock.sendall(f"POST /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\n"
                     f"Host: x\r\nContent-Type: text/plain\r\nContent-Length: {2 * MB}\r\n\r\n"
                     .encode())  # the head only: an answer now cannot have read the body
        started = time.monotonic()
        try:
            answer = rawclient.read_to_eof(sock)
        except TimeoutError:
            answer = b""
        took = time.monotonic() - started
    print(f"\n2 MB POST answered {answer[9:12].decode() or 'nothing'} after {took:.3f} s")
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    cluster.wait_log(f"refused a POST body of {2 * MB} bytes")
    assert rawclient.handshake(cluster.port)


# ------------------------------------------------------------------------ websocket rate

@pytest.mark.parametrize("target", SMALL_LIMIT_TARGETS)
def test_a_websocket_past_its_rate_is_read_more_slowly(start_cluster, target):
    """60 calls at once at 200,000 bytes/s: a frame counts 16 KB more, a burst is one
    100,000-byte message: about 4 s of reading, where unpaced they take a blink."""
    calls = 60
    cluster = start_cluster(target, workers=1, args=("--websocket-rate", "200000"))
    sock = rawclient.websocket(cluster.port, "127.0.0.2", timeout=60)
    sock.sendall(rawclient.frame(1, b"40"))
    wait_for_packet(sock, lambda payload: payload.startswith(b"40"))
    started = time.monotonic()
    sock.sendall(rawclient.frame(1, b'421["echo",1]') * calls)
    acks = 0
    while acks < calls:
        acks += wait_for_packet(sock, lambda payload: payload == b"431[1]")
    took = time.monotonic() - started
    print(f"\n{calls} calls answered in {took:.1f} s at --websocket-rate 200000")
    assert took > 2, f"{calls} calls were read in {took:.2f} s: not paced"
    assert rawclient.handshake(cluster.port, "127.0.0.3")
    sock.close()


def wait_for_packet(sock: socket.socket, wanted: Callable[[bytes], bool]) -> int:
    """Read frames until one ``wanted`` comes (Engine.IO pings and noops pass); 1."""
    for _ in range(1000):
        if wanted(rawclient.read_frame(sock)[1]):
            return 1
    raise AssertionError("the packet never came")


# -------------------------------------------------------------------- worker connections

@pytest.mark.parametrize("target", TARGETS)
def test_a_full_worker_answers_503_then_serves_once_its_silent_connections_time_out(
        start_cluster, target):
    """The worker is full for the header timeout (10 s: ten heartbeats, so that one gets
    through to the master even when a busy machine starves the worker for seconds)."""
    cluster = start_cluster(target, workers=1, args=(
        "--worker-connections", "20", "--header-timeout", "10", "--peek-timeout", "0.5"))
    held = open_silent(cluster.port, 30)
    try:
        cluster.wait_log(" is full: ", timeout=30)
        request = (b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n"
                   b"Connection: close\r\n\r\n")
        answer = rawclient.http(cluster.port, request, "127.0.0.30", timeout=30)
        assert answer.startswith(b"HTTP/1.1 503"), answer[:100]  # answered, not left hanging
        wait_for(lambda: rawclient.http(cluster.port, request, "127.0.0.30", timeout=30)
                 .startswith(b"HTTP/1.1 200"), 60, interval=0.5,
                 what="a handshake served once the silent connections timed out")
    finally:
        for sock in held:
            sock.close()


@pytest.mark.parametrize("target", TARGETS)
def test_a_full_worker_is_passed_over(start_cluster, target):
    """With ``--balance ip``, silent connections from one address fill one of two workers:
    every new client, wherever its address hashes, is served by the other one meanwhile."""
    cluster = start_cluster(target, workers=2, args=(
        "--worker-connections", "20", "--header-timeout", "60", "--peek-timeout", "0.5",
        "--balance", "ip"))
    held = open_silent_from(cluster.port, "127.0.0.2", 25)
    try:
        cluster.wait_log(" is full: ", timeout=30)
        for index in range(20):
            assert rawclient.handshake(cluster.port, f"127.0.0.{40 + index}", timeout=30)
    finally:
        for sock in held:
            sock.close()


def open_silent_from(port: int, source: str, count: int) -> list[socket.socket]:
    """``count`` connections from ``source`` that send nothing."""
    socks = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
        sock.setblocking(False)
        socks.append(sock)
    return socks
