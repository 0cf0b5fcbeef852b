"""The limits of the options table, held by the threading worker against a real cluster.

Silent and half-sent connections are closed at the header timeout and hold no thread
meanwhile; a POST over the body limit is answered 413 before its body is read; a
permessage-deflate bomb and a 100 MB header bomb leave the worker within 100 MB of
where it started, their sockets closed, other clients answered meanwhile; a worker
whose threads are all busy says it is full and answers what still reaches it.

The tests of the default limits share one cluster (an ``xdist_group``); the others set
limits of their own and start their own.
"""
from __future__ import annotations

import base64
import os
import socket
import threading
import time
import zlib

import psutil
import pytest

from tests.support import rawclient
from tests.support.masters import shared_cluster
from tests.support.waiting import wait_for
from tests.e2e.test_worker_limits import closed_by_server, open_silent

APP = "tests.apps.threading_chat:app"
MB = 1_000_000


DEFAULTS = pytest.mark.xdist_group("threading-limits-defaults")
"""The tests of the default limits: one pytest process, one cluster (:func:`default_cluster`)."""


@pytest.fixture(scope="module")
def default_cluster(tmp_path_factory):
    """One threading worker with the default limits (permessage-deflate granted, for the
    bomb), for the tests that only attack it as a client would; each measures its worker's
    memory from its own start, and each attack's sockets are closed by the end of its test."""
    with shared_cluster(tmp_path_factory.mktemp("threading-limits") / "master.log", APP,
                        workers=1, args=("--websocket-deflate",)) as cluster:
        yield cluster


def worker(cluster) -> psutil.Process:
    (pid,) = wait_for(cluster.worker_pids, 30, what="the worker")
    return psutil.Process(pid)


class Prober:
    """Another client's handshakes, one after another, while an attack goes on."""

    def __init__(self, port: int, source: str = "127.0.0.3") -> None:
        self.answered = 0
        self.failed: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, args=(port, source))

    def __enter__(self) -> "Prober":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)

    def _loop(self, port: int, source: str) -> None:
        for _ in range(2000):
            if self._stop.is_set():
                return
            try:
                rawclient.handshake(port, source, timeout=30)
                self.answered += 1
            except Exception as exc:  # noqa: BLE001 - every failure is a finding
                self.failed.append(f"{type(exc).__name__}: {exc}")
            time.sleep(0.05)


def test_silent_and_half_sent_connections_hold_no_thread_and_close_at_the_header_timeout(
        start_cluster):
    cluster = start_cluster(APP, workers=1, args=(
        "--header-timeout", "3", "--threads", "4", "--peek-timeout", "0.5"))
    started = time.monotonic()
    silent = open_silent(cluster.port, 600)
    half = open_silent(cluster.port, 200)
    for sock in half:  # a request line and part of the headers, then nothing
        sock.send(b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\nX-Half: ")
    try:
        with Prober(cluster.port) as prober:  # 800 connections, 4 threads: still served
            wait_for(lambda: prober.answered >= 3, 30, what="handshakes among the silent ones")
        assert not prober.failed, prober.failed[:3]
        early = closed_by_server(silent + half, 0.5)
        assert early == 0 or time.monotonic() - started >= 3, "closed before the header timeout"
        assert closed_by_server(silent + half, 60) == 800
        assert rawclient.handshake(cluster.port)
    finally:
        for sock in silent + half:
            sock.close()


@DEFAULTS
def test_a_2_mb_post_is_answered_413_at_once_without_its_body(default_cluster):
    cluster = default_cluster
    sid = rawclient.handshake(cluster.port)
    with socket.create_connection(("127.0.0.1", cluster.port), timeout=15) as sock:
        sock.sendall(f"POST /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\n"
                     f"Host: x\r\nContent-Type: text/plain\r\nContent-Length: {2 * MB}\r\n\r\n"
                     .encode())
        sent_at = time.monotonic()
        answer = sock.recv(65536)  # nothing of the body sent: the answer cannot wait for it
        took = time.monotonic() - sent_at
        assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
        assert rawclient.read_to_eof(sock) == b""
    print(f"\n413 after {took * 1000:.0f} ms")
    assert took < 1.0
    cluster.wait_log(f"refused a POST body of {2 * MB} bytes")
    assert rawclient.handshake(cluster.port)


def _deflated_websocket(port: int, source: str) -> socket.socket:
    """A new Engine.IO session straight over a websocket with permessage-deflate agreed."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30, source_address=(source, 0))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(f"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\n"
                 f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                 "Sec-WebSocket-Version: 13\r\n"
                 "Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        byte = sock.recv(1)
        assert byte, f"no upgrade: {head!r}"
        head += byte
    assert head.startswith(b"HTTP/1.1 101") and b"permessage-deflate" in head, head
    return sock


def _deflated_frame(message: bytes) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    payload = compressor.compress(message) + compressor.flush(zlib.Z_SYNC_FLUSH)
    data = bytearray(rawclient.frame(1, payload[:-4]))  # minus the sync flush's 00 00 ff ff
    data[0] |= 0x40  # RSV1: compressed
    return bytes(data)


def _peak_rss_while(proc: psutil.Process, action) -> int:
    """Run ``action`` while sampling ``proc``'s RSS; the highest seen."""
    peak = proc.memory_info().rss
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, proc.memory_info().rss)
            time.sleep(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        action()
        time.sleep(1)
    finally:
        done.set()
        sampler.join(10)
    return peak


@DEFAULTS
def test_a_deflate_bomb_is_closed_before_it_inflates(default_cluster):
    """10 websockets x 5 messages of 15 MB each, deflated to about 15 KB each."""
    cluster = default_cluster
    proc = worker(cluster)
    bomb = _deflated_frame(b'42["echo","' + b"a" * 15 * MB + b'"]')
    assert len(bomb) < 20_000
    closed: list[bool] = []

    def attack() -> None:
        socks = [_deflated_websocket(cluster.port, f"127.0.0.{20 + i}") for i in range(10)]
        for sock in socks:
            try:
                for _ in range(5):
                    sock.sendall(bomb)
            except (BrokenPipeError, ConnectionResetError):
                pass
        for sock in socks:
            closed.append(_closed_by_server(sock))
            sock.close()

    before = proc.memory_info().rss
    with Prober(cluster.port) as prober:
        peak = _peak_rss_while(proc, attack)
        wait_for(lambda: prober.answered >= 3, 30, what="handshakes during the bomb")
    print(f"\ndeflate bomb: worker RSS {before / MB:.0f} MB -> peak {peak / MB:.0f} MB")
    assert peak - before < 100 * MB
    assert closed == [True] * 10
    assert not prober.failed, prober.failed[:3]


def _closed_by_server(sock: socket.socket) -> bool:
    """Whether the server closes ``sock`` (a close frame 1009 then the end, or a reset when
    the rest of the bomb was still unread): never a frame of an echo."""
    try:
        data = rawclient.read_to_eof(sock, limit=1 << 22)
    except ConnectionResetError:
        return True
    return b"a" * 1000 not in data


@DEFAULTS
def test_a_100_mb_header_bomb_is_cut_at_the_head_limit(default_cluster):
    """10 connections, each sending 100 MB of header lines."""
    cluster = default_cluster
    proc = worker(cluster)
    line = b"X-Bomb: " + b"b" * 990 + b"\r\n"
    answers: list[bytes] = []

    def attack() -> None:
        def one(index: int) -> None:
            with socket.create_connection(("127.0.0.1", cluster.port), timeout=30,
                                          source_address=(f"127.0.0.{40 + index}", 0)) as sock:
                sent = 0
                try:
                    sock.sendall(b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\n")
                    chunk = line * 1000
                    while sent < 100 * MB:
                        sock.sendall(chunk)
                        sent += len(chunk)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                try:
                    answers.append(rawclient.read_to_eof(sock))
                except ConnectionResetError:
                    answers.append(b"reset")
        threads = [threading.Thread(target=one, args=(i,)) for i in range(10)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)

    before = proc.memory_info().rss
    with Prober(cluster.port) as prober:
        peak = _peak_rss_while(proc, attack)
        wait_for(lambda: prober.answered >= 3, 30, what="handshakes during the bomb")
    print(f"\nheader bomb: worker RSS {before / MB:.0f} MB -> peak {peak / MB:.0f} MB")
    assert peak - before < 100 * MB
    assert len(answers) == 10
    assert all(a.startswith(b"HTTP/1.1 431") or a == b"reset" for a in answers), answers
    assert not prober.failed, prober.failed[:3]


def test_a_worker_whose_threads_are_all_busy_says_it_is_full_and_answers_503(start_cluster):
    cluster = start_cluster(APP, workers=1, args=("--threads", "2"))
    held = [rawclient.websocket(cluster.port, f"127.0.0.{60 + i}", timeout=30) for i in range(2)]
    try:
        cluster.wait_log("is full: every thread busy (--threads)", timeout=30)
        started = time.monotonic()
        answer = rawclient.http(cluster.port, b"GET /socket.io/?EIO=4&transport=polling "
                                b"HTTP/1.1\r\nHost: x\r\n\r\n", "127.0.0.62", timeout=30)
        assert answer.startswith(b"HTTP/1.1 503 "), answer[:200]
        assert time.monotonic() - started < 25
        held.pop().close()
        # The master places new sessions on a worker again once it has heard so (until then,
        # with every worker full, it answers 503 itself: admission control).
        cluster.wait_log("has room again", timeout=30)
        assert rawclient.handshake(cluster.port, "127.0.0.63", timeout=30)
    finally:
        for sock in held:
            sock.close()
    assert "Traceback" not in cluster.log


def test_an_idle_keepalive_connection_is_closed_at_the_keepalive_timeout(start_cluster):
    cluster = start_cluster(APP, workers=1, args=("--keepalive-timeout", "1"))
    with socket.create_connection(("127.0.0.1", cluster.port), timeout=30) as sock:
        sock.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        assert rawclient.read_to_eof(sock) == b""
        assert time.monotonic() - started < 20


@DEFAULTS
def test_a_fragmented_oversized_message_is_refused_as_it_arrives(default_cluster):
    """36 MB in 900 KB fragments, each under the 1 MB limit: closed before the third."""
    cluster = default_cluster
    proc = worker(cluster)
    attacker = rawclient.websocket(cluster.port, "127.0.0.2", timeout=30)
    chunk = b"x" * 900_000
    sent = 0

    def attack() -> None:
        nonlocal sent
        try:
            attacker.sendall(rawclient.frame(1, b"4" + chunk, fin=False))
            for _ in range(39):
                attacker.sendall(rawclient.frame(0, chunk, fin=False))
                sent += 1
        except (BrokenPipeError, ConnectionResetError):
            pass

    before = proc.memory_info().rss
    with Prober(cluster.port) as prober:
        peak = _peak_rss_while(proc, attack)
        wait_for(lambda: prober.answered >= 3, 30, what="handshakes during the attack")
    attacker.close()
    assert sent < 39, "the worker read all 36 MB"
    assert peak - before < 30 * MB, f"RSS grew {(peak - before) / MB:.0f} MB"
    assert not prober.failed, prober.failed[:3]


@pytest.mark.parametrize("target", [APP, "tests.apps.gevent_limits:app"],
                         ids=["threading", "gevent"])
def test_a_big_frame_is_charged_its_bytes_and_16_kib_once(target, start_cluster):
    """--websocket-rate charges each frame its payload and 16 KiB once, however many
    reads it takes: 6 frames of 400 KB cost 2.5 MB, 1.5 MB past the burst, about 3 s at
    500,000 bytes/s (16 KiB per 4 KiB read would make it 12 MB and 22 s)."""
    calls, size = 6, 400_000
    cluster = start_cluster(target, workers=1, args=("--websocket-rate", "500000"))
    sock = rawclient.websocket(cluster.port, "127.0.0.2", timeout=60)
    sock.sendall(rawclient.frame(1, b"40"))
    while not rawclient.read_frame(sock)[1].startswith(b"40"):  # after a noop ("6")
        pass
    message = rawclient.frame(1, b'421["whoami","' + b"a" * size + b'"]')
    started = time.monotonic()
    sock.sendall(message * calls)
    answered = 0
    while answered < calls:
        payload = rawclient.read_frame(sock)[1]
        if payload == b"2":  # a ping
            sock.sendall(rawclient.frame(1, b"3"))
        else:
            assert payload.startswith(b"431["), payload[:200]
            answered += 1
    took = time.monotonic() - started
    sock.close()
    print(f"\n{calls} frames of {size} bytes answered in {took:.1f} s")
    assert 1.5 < took < 12, f"{calls} frames of {size} bytes answered in {took:.1f} s"
