"""What one client can make a gevent worker wait for, hold or do, against a real cluster.

The attacks the eventlet worker survives (tests/e2e/test_worker_limits.py), against forked
gevent workers over real sockets: a permessage-deflate bomb and a header bomb leave the
worker within 100 MB of where it started, the sockets closed and other clients served;
silent, half-sent and idle keep-alive connections are closed at their timeouts; a POST
over the body limit is answered 413 without its body being read; a websocket is read at
``--websocket-rate``; a websocket holds one file descriptor; a full worker is passed over
and answers 503. A bad request is one line of the worker's log, and a websocket's close is
answered at once.
"""
from __future__ import annotations

import re
import socket
import threading
import time
import zlib
from typing import Callable

import psutil
import pytest
import socketio

from tests.support import rawclient
from tests.support.waiting import wait_for
from cluster.protocol.sids import tag_of
from tests.e2e.test_worker_limits import (closed_by_server, open_silent, outlive_both_timeouts,
                                          pytest_raises_closed, worker)

APP = "tests.apps.gevent_limits:app"
CHAT = "tests.apps.gevent_chat:sio"
MB = 1_000_000


class PeakRss:
    """Samples a process's resident memory in a thread, keeping the peak."""

    def __init__(self, proc: psutil.Process) -> None:
        self._proc = proc
        self.start = self.peak = proc.memory_info().rss
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join(10)

    def _sample(self) -> None:
        while not self._done.wait(0.02):
            self.peak = max(self.peak, self._proc.memory_info().rss)

    @property
    def growth(self) -> float:
        """MB the peak is over the start."""
        return (self.peak - self.start) / MB


def eof_within(socks: list, timeout: float) -> int:
    """Read (and drop) what each socket gets until the server closes it; how many closed."""
    closed = 0
    deadline = time.monotonic() + timeout
    for sock in socks:
        try:
            while time.monotonic() < deadline:
                sock.settimeout(max(0.1, deadline - time.monotonic()))
                if not sock.recv(1 << 20):
                    closed += 1
                    break
        except (ConnectionResetError, BrokenPipeError):
            closed += 1
        except TimeoutError:
            pass
    return closed


def handshake_meanwhile(port: int) -> float:
    """Another client's handshake: the seconds it took (it must be answered)."""
    started = time.monotonic()
    assert rawclient.handshake(port, "127.0.0.99", timeout=60)
    return time.monotonic() - started


# ------------------------------------------------------------------------ the two bombs

def deflate_bomb(size: int) -> Callable[[], bytes]:
    """A client's permessage-deflate compressor: each call, one Engine.IO message of
    ``size`` bytes, compressed (about 1,000 times smaller)."""
    deflater = zlib.compressobj(9, zlib.DEFLATED, -15)

    def message() -> bytes:
        data = deflater.compress(b"4" + b"a" * size) + deflater.flush(zlib.Z_SYNC_FLUSH)
        return rawclient.frame(1, data[:-4], compressed=True)  # the 00 00 ff ff tail goes

    return message


def test_a_deflate_bomb_is_refused_as_it_inflates(start_cluster):
    """10 websockets × 5 messages of 15 MB each, sent compressed (about 730 KB in all)."""
    cluster = start_cluster(CHAT, workers=1, args=("--websocket-deflate",))
    proc = worker(cluster)
    socks, bombs = [], []
    for index in range(10):
        sock, head = rawclient.upgrade(cluster.port, f"127.0.0.{2 + index}",
                                       extensions="permessage-deflate", timeout=30)
        assert b"permessage-deflate" in head.lower(), head
        socks.append(sock)
        bombs.append(deflate_bomb(15 * MB))
    sent = 0
    handshakes = []
    with PeakRss(proc) as rss:
        for _ in range(5):
            for sock, bomb in zip(socks, bombs):
                message = bomb()
                try:
                    sock.sendall(message)
                    sent += len(message)
                except (BrokenPipeError, ConnectionResetError):
                    pass
            handshakes.append(handshake_meanwhile(cluster.port))
        closed = eof_within(socks, 60)
        time.sleep(0.5)  # the peak, if any, after the last bytes
    for sock in socks:
        sock.close()
    print(f"\n{sent / 1000:.0f} KB of compressed messages sent; worker RSS "
          f"{rss.start / MB:.0f} → peak {rss.peak / MB:.0f} MB; other client's handshakes "
          f"{', '.join(f'{h:.2f}' for h in handshakes)} s")
    assert rss.growth < 100, f"RSS grew {rss.growth:.0f} MB"
    assert closed == 10, f"{10 - closed} websockets still open"
    assert rawclient.handshake(cluster.port)
    assert "Traceback" not in cluster.log


def test_a_header_bomb_is_refused_at_the_head_limit(start_cluster):
    """10 connections each sending 100 MB of header lines of 60 KB."""
    cluster = start_cluster(CHAT, workers=1)
    proc = worker(cluster)
    line = b"X-Pad: " + b"a" * 60_000 + b"\r\n"
    sent = [0] * 10
    answers = [b""] * 10

    def bomb(index: int) -> None:
        with socket.create_connection(("127.0.0.1", cluster.port), timeout=60,
                                                source_address=(f"127.0.0.{2 + index}", 0)) as sock:
            try:
                sock.sendall(b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n")
                while sent[index] < 100 * MB:
                    sock.sendall(line * 16)
                    sent[index] += len(line) * 16
                answers[index] = b"kept reading"
            except (BrokenPipeError, ConnectionResetError):
                pass
            try:
                answers[index] = answers[index] or rawclient.read_to_eof(sock)
            except ConnectionResetError:
                pass

    with PeakRss(proc) as rss:
        threads = [threading.Thread(target=bomb, args=(index,)) for index in range(10)]
        for thread in threads:
            thread.start()
        took = handshake_meanwhile(cluster.port)
        for thread in threads:
            thread.join(120)
    print(f"\nheader bomb: {sum(sent) / MB:.0f} MB sent in all; worker RSS "
          f"{rss.start / MB:.0f} → peak {rss.peak / MB:.0f} MB; a handshake meanwhile {took:.2f} s")
    assert not any(thread.is_alive() for thread in threads)
    assert all(answer == b"" or answer.startswith(b"HTTP/1.1 400 ") for answer in answers), \
        [answer[:100] for answer in answers]
    assert max(sent) < 100 * MB, "a connection sent its whole 100 MB head"
    assert rss.growth < 100, f"RSS grew {rss.growth:.0f} MB"
    assert "Traceback" not in cluster.log


@pytest.mark.parametrize("lines, length, what", [
    (100, 8_000, "an 800 KB head"),
    (1, 9_000, "a 9 KB header line"),
])
def test_a_head_over_the_limits_is_answered_400(start_cluster, lines, length, what):
    cluster = start_cluster(CHAT, workers=1)
    head = b"".join(b"X-Pad-%d: %s\r\n" % (n, b"a" * length) for n in range(lines))
    answer = rawclient.http(cluster.port, b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\n"
                            b"Host: x\r\n" + head + b"Connection: close\r\n\r\n", timeout=30)
    assert answer.startswith(b"HTTP/1.1 400 "), (what, answer[:200])
    assert answer.endswith(b"\r\n\r\n"), answer  # a bare 400
    cluster.wait_log("a bad request from 127.0.0.1: ")
    assert rawclient.handshake(cluster.port)


# ------------------------------------------------------------------ timeouts of the head

def test_silent_and_half_sent_connections_are_closed_at_the_header_timeout(start_cluster):
    silent = 1000
    cluster = start_cluster(APP, workers=1, args=(
        "--header-timeout", "3", "--peek-timeout", "0.5", "--worker-connections", "1100"))
    started = time.monotonic()  # none can be closed before started + 3 s
    socks = open_silent(cluster.port, silent)
    try:
        with socket.create_connection(("127.0.0.1", cluster.port), timeout=30) as slow:
            slow.sendall(b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\n")
            assert rawclient.handshake(cluster.port, "127.0.0.99")  # served meanwhile
            early = closed_by_server(socks, 1.0)
            assert early == 0 or time.monotonic() - started >= 3, "closed before the header timeout"
            with pytest_raises_closed():
                for _ in range(120):  # a header byte every half second, well under 3 s apart
                    slow.sendall(b"X")
                    time.sleep(0.5)
        assert closed_by_server(socks, 60) == silent
        assert rawclient.handshake(cluster.port)
    finally:
        for sock in socks:
            sock.close()


def test_an_idle_keepalive_connection_is_closed_at_the_keepalive_timeout(start_cluster):
    cluster = start_cluster(APP, workers=1, args=("--keepalive-timeout", "1"))
    with socket.create_connection(("127.0.0.1", cluster.port), timeout=30) as sock:
        sock.sendall(b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = b""
        while b"\r\n\r\n" not in answer:  # pywsgi sends the head and the body apart
            answer += sock.recv(65536)
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        length = int(re.search(rb"(?im)^content-length: *(\d+)", head)[1])
        while len(body) < length:
            body += sock.recv(65536)
        assert rawclient.read_to_eof(sock) == b""  # then closed at the keep-alive timeout


def test_long_polls_and_websockets_outlive_both_timeouts(start_cluster):
    outlive_both_timeouts(start_cluster, APP)


# ------------------------------------------------------------------------ body and rate

def test_an_oversized_post_is_answered_413_without_reading_its_body(start_cluster):
    cluster = start_cluster(APP, workers=1)
    sid = rawclient.handshake(cluster.port)
    size = 2_000_000  # python-socketio's max_http_buffer_size is 1,000,000
    with socket.create_connection(("127.0.0.1", cluster.port), timeout=15) as sock:
        started = time.monotonic()
        sock.sendall(f"POST /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\n"
                     f"Host: x\r\nContent-Type: text/plain\r\nContent-Length: {size}\r\n\r\n"
                     .encode())
        answer = sock.recv(65536)  # the answer comes with no byte of the body sent
        took = time.monotonic() - started
        assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
        assert rawclient.read_to_eof(sock) == b""  # and the connection closes
    print(f"\n413 after {took:.3f} s")
    cluster.wait_log("refused a POST body of 2000000 bytes")
    assert rawclient.handshake(cluster.port)
    with socket.create_connection(("127.0.0.1", cluster.port), timeout=15) as sock:
        sock.sendall(f"POST /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\n"
                     "Host: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n4\r\n".encode())
        answer = rawclient.read_to_eof(sock)  # a chunked body could go on for ever
    assert answer.startswith(b"HTTP/1.1 411 "), answer[:200]


def test_a_websocket_is_read_at_the_websocket_rate(start_cluster):
    """300 calls sent at once cost 300 frames of 16 KB: about 4.9 MB, 3.9 MB past the
    burst, so at 1,000,000 bytes/s their answers take at least 3.9 s (unpaced: a blink)."""
    calls = 300
    cluster = start_cluster(APP, workers=1, args=("--websocket-rate", "1000000"))
    sock = rawclient.websocket(cluster.port, "127.0.0.2", timeout=60)
    sock.sendall(rawclient.frame(1, b"40"))
    started = time.monotonic()
    sock.sendall(rawclient.frame(1, b'421["echo",1]') * calls)
    seen = b""
    while seen.count(b"431[1]") < calls:
        chunk = sock.recv(1 << 16)
        assert chunk, f"closed after {seen.count(b'431[1]')} answers"
        seen += chunk
    took = time.monotonic() - started
    sock.close()
    print(f"\n{calls} calls answered in {took:.1f} s")
    assert took > 2.5, f"{calls} calls answered in {took:.1f} s: not paced"


# --------------------------------------------------------------------- a full worker

def test_a_websocket_holds_one_file_descriptor_of_its_worker(start_cluster):
    """The worker serves a websocket on the connection's own socket: 40 websockets cost it
    40 file descriptors, not the 80 of simple-websocket's dup() (a worker at 10,000
    websockets would be out of them at its 20,000 limit, its upgrades answered 400)."""
    cluster = start_cluster(CHAT, workers=1)
    (pid,) = wait_for(cluster.worker_pids, 30, what="the worker")
    held = psutil.Process(pid)
    warm = rawclient.websocket(cluster.port, "127.0.0.2", timeout=20)
    before = held.num_fds()
    sockets = [rawclient.websocket(cluster.port, f"127.0.1.{index + 1}", timeout=20)
               for index in range(40)]
    try:
        grown = held.num_fds() - before
        assert 40 <= grown <= 45, f"{grown} file descriptors for 40 websockets"
    finally:
        for sock in [warm, *sockets]:
            sock.close()


def test_a_full_worker_is_passed_over_and_answers_503(start_cluster):
    """--worker-connections 3: a worker that holds 3 connections gets no new clients,
    and a request for one of its sessions is answered 503, not left waiting."""
    cluster = start_cluster(CHAT, workers=2, args=("--worker-connections", "3"))
    handshake = b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n"
    held: dict[int | None, list] = {}
    try:
        for index in range(5):  # keep-alive connections, each answered and left open
            sock = socket.create_connection(("127.0.0.1", cluster.port), timeout=15,
                                            source_address=(f"127.0.0.{20 + index}", 0))
            sock.sendall(handshake)
            answer = b""
            while b'"upgrades"' not in answer:  # the open packet's sid, then its upgrades
                chunk = sock.recv(65536)
                assert chunk, answer
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 200"), answer
            sid = answer.split(b'"sid":"')[1].split(b'"')[0].decode()
            held.setdefault(tag_of(sid), []).append((sock, sid))
            if len(held[tag_of(sid)]) == 3:
                break
        full_tag, full_held = next((tag, socks) for tag, socks in held.items() if len(socks) == 3)
        for tag, socks in held.items():
            if tag != full_tag:
                for sock, _ in socks:
                    sock.close()
        wait_for(lambda: " is full: 3 connections" in cluster.log, 30,
                 what="the heartbeat to report the worker full")
        placed = [tag_of(rawclient.handshake(cluster.port, f"127.0.0.{40 + n}")) for n in range(6)]
        assert full_tag not in placed, "a new client was placed on the full worker"
        owned = full_held[0][1]
        answer = rawclient.http(cluster.port, f"GET /socket.io/?EIO=4&transport=polling&sid="
                                f"{owned} HTTP/1.1\r\nHost: x\r\n\r\n".encode(), "127.0.0.50",
                                timeout=30)
        assert answer.startswith(b"HTTP/1.1 503") and answer.endswith(b"Service Unavailable")
        cluster.wait_log("is full (--worker-connections 3): a connection gets a 503")
        full_held.pop()[0].close()  # room again: the session's requests are served
        connect = (f"POST /socket.io/?EIO=4&transport=polling&sid={owned} HTTP/1.1\r\nHost: x\r\n"
                   "Content-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\n40")
        wait_for(lambda: rawclient.http(cluster.port, connect.encode(), "127.0.0.51").startswith(
            b"HTTP/1.1 200"), 20, what="the session served once a connection has closed")
    finally:
        for socks in held.values():
            for sock, _ in socks:
                sock.close()
    assert "Traceback" not in cluster.log


# ----------------------------------------------------------------------- the log items

def test_a_bad_request_is_one_line_of_the_workers_log(start_cluster):
    cluster = start_cluster(CHAT, workers=1)
    (pid,) = cluster.worker_pids()
    answer = rawclient.http(cluster.port, b"GARBAGE\x1b[31m\r\n\r\n")
    assert answer == b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-length: 0\r\n\r\n"
    cluster.wait_log(f"[{pid}] [INFO] worker {pid}: a bad request from 127.0.0.1: "
                     r"Invalid HTTP method: 'GARBAGE\x1b[31m\r\n'")
    assert "\x1b" not in cluster.log and "gevent._socket" not in cluster.log


def test_a_websocket_close_is_answered_and_the_connection_ends(start_cluster):
    """Both ways: the client closes, or the server does (the client's Engine.IO close)."""
    cluster = start_cluster(CHAT, workers=1)
    close = rawclient.frame(8, b"\x03\xe8")
    for by_client in (True, False):
        sock = rawclient.websocket(cluster.port, timeout=20)
        sock.sendall(close if by_client else rawclient.frame(1, b"1"))
        opcode = 0
        while opcode != 8:
            opcode, _ = rawclient.read_frame(sock)
        if not by_client:
            sock.sendall(close)  # the answer to the server's close
        assert rawclient.read_to_eof(sock) == b""  # nothing more (no "HTTP/1.1 400"), and the end
        sock.close()
    client = socketio.Client()
    client.connect(cluster.url, transports=["websocket"])
    started = time.monotonic()
    client.disconnect()
    print(f"\npython-socketio's websocket disconnect took {time.monotonic() - started:.3f} s")
    assert "Invalid HTTP method" not in cluster.log and "bad request" not in cluster.log
