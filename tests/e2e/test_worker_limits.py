"""What one client can make a worker wait for, hold or do, against a real cluster.

Issue 8 items 4, 6 and 8, issue 9 item 5: silent and slow connections are closed after
the header timeout, idle keep-alive connections after the keep-alive timeout (long polls
and websockets are not cut); an oversized POST is answered 413; a fragmented websocket
message over the limit is refused before it is buffered; no traceback reaches a client.
Every worker inherits the open-files limit the master raised before it forked.
"""
from __future__ import annotations

import asyncio
import os
import resource
import selectors
import signal
import socket
import struct
import threading
import time
from pathlib import Path

import psutil
import pytest

from tests.support import rawclient
from tests.support.clients import connected, run, wait_upgraded
from tests.support.masters import RUNTIME_TARGETS
from tests.support.waiting import wait_for
from workers.limits import LINGER_LIMIT

SILENT = 2000
TCP_RMEM_MAX = int(Path("/proc/sys/net/ipv4/tcp_rmem").read_text().split()[2])
"""The most a TCP socket's receive buffer grows to (what a closed worker leaves unread)."""
APP = "tests.apps.limits:app"


def open_silent(port: int, count: int) -> list[socket.socket]:
    """``count`` connections that send nothing, from 127.0.0.2 … 127.0.0.9."""
    socks = []
    for index in range(count):
        sock = socket.socket()
        sock.bind((f"127.0.0.{2 + index % 8}", 0))
        sock.connect(("127.0.0.1", port))
        sock.setblocking(False)
        socks.append(sock)
    return socks


def closed_by_server(socks: list[socket.socket], timeout: float) -> int:
    """Wait up to ``timeout`` for every socket to read EOF; return how many did."""
    open_ = {sock.fileno(): sock for sock in socks}
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        for sock in socks:
            selector.register(sock, selectors.EVENT_READ)
        while open_ and time.monotonic() < deadline:
            for key, _ in selector.select(0.2):
                try:
                    data = key.fileobj.recv(4096)
                except ConnectionResetError:
                    data = b""
                assert not data, f"a silent connection got an answer: {data[:200]!r}"
                selector.unregister(key.fileobj)
                open_.pop(key.fd)
    return len(socks) - len(open_)


def worker(cluster) -> psutil.Process:
    (pid,) = wait_for(cluster.worker_pids, 30, what="the worker")
    return psutil.Process(pid)


def test_silent_connections_are_closed_after_the_header_timeout(start_cluster):
    cluster = start_cluster(APP, workers=1, args=(
        "--header-timeout", "3", "--peek-timeout", "0.5", "--worker-connections", "2100"))
    started = time.monotonic()  # none can be closed before started + 3 s
    socks = open_silent(cluster.port, SILENT)
    try:
        assert rawclient.handshake(cluster.port)  # a normal client is served meanwhile
        early = closed_by_server(socks, 1.0)
        assert early == 0 or time.monotonic() - started >= 3, "closed before the header timeout"
        assert closed_by_server(socks, 60) == SILENT
        assert rawclient.handshake(cluster.port)
    finally:
        for sock in socks:
            sock.close()


def test_a_slow_request_is_closed_at_the_header_timeout_not_per_read(start_cluster):
    cluster = start_cluster(APP, workers=1, args=("--header-timeout", "2"))
    with socket.create_connection(("127.0.0.1", cluster.port), timeout=10) as sock:
        sock.sendall(b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\n")
        started = time.monotonic()
        with pytest_raises_closed():
            for _ in range(60):  # a header byte every half second, well under 2 s apart
                sock.sendall(b"X")
                time.sleep(0.5)
        assert time.monotonic() - started < 25


class pytest_raises_closed:
    """Expect the peer to close the connection inside the block (EPIPE/ECONNRESET)."""

    def __enter__(self):
        return self

    def __exit__(self, kind, value, tb):
        assert kind is not None and issubclass(kind, (BrokenPipeError, ConnectionResetError)), \
            "the server kept a slowly sent request open"
        return True


def test_an_idle_keepalive_connection_is_closed_after_the_keepalive_timeout(start_cluster):
    cluster = start_cluster(APP, workers=1, args=("--keepalive-timeout", "1"))
    with socket.create_connection(("127.0.0.1", cluster.port), timeout=30) as sock:
        sock.sendall(b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n")
        head = sock.recv(65536)
        assert head.startswith(b"HTTP/1.1 200"), head
        started = time.monotonic()
        assert rawclient.read_to_eof(sock) == b""
        assert time.monotonic() - started < 20


def test_long_polls_and_websockets_outlive_both_timeouts(start_cluster):
    outlive_both_timeouts(start_cluster, APP)


def outlive_both_timeouts(start_cluster, app: str) -> None:
    """``app`` pings every 3 s: a long poll waits 3 s, longer than both 1 s timeouts. Each
    round spans a whole ping cycle; the second shows the first was no one-off."""
    cluster = start_cluster(app, workers=1, args=("--header-timeout", "1",
                                                   "--keepalive-timeout", "1"))

    async def clients():
        async with connected(cluster.url, "127.0.0.2", transports=["polling"]) as polling, \
                connected(cluster.url, "127.0.0.3") as ws:
            await wait_upgraded(ws)
            for _ in range(2):
                await asyncio.sleep(3.5)
                assert polling.connected and ws.connected
                assert (await polling.call("whoami", timeout=10))["pid"]
                assert (await ws.call("whoami", timeout=10))["pid"]

    run(clients())


def test_an_oversized_post_is_answered_413_and_closed(start_cluster):
    cluster = start_cluster(APP, workers=1)
    sid = rawclient.handshake(cluster.port)
    size = 2_000_000  # python-socketio's max_http_buffer_size is 1,000,000
    with socket.create_connection(("127.0.0.1", cluster.port), timeout=15) as sock:
        sock.sendall(f"POST /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\n"
                     f"Host: x\r\nContent-Type: text/plain\r\nContent-Length: {size}\r\n\r\n"
                     .encode())
        answer = rawclient.read_to_eof(sock)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert rawclient.handshake(cluster.port)
    cluster.wait_log("refused a POST body of 2000000 bytes")

    with socket.create_connection(("127.0.0.1", cluster.port), timeout=15) as sock:
        sock.sendall(f"POST /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\n"
                     "Host: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n4\r\n".encode())
        answer = rawclient.read_to_eof(sock)  # a chunked body could go on for ever
    assert answer.startswith(b"HTTP/1.1 411 "), answer[:200]


def refused_sender(port: int) -> tuple[socket.socket, int]:
    """A connection from 127.0.0.2 whose POST (of a new session) declares a body far over
    the limit, and the most bytes the kernel's buffers may take from it once the worker
    stops reading (its send buffer, small, and the worker's receive buffer at its largest)."""
    sid = rawclient.handshake(port)
    sender = socket.create_connection(("127.0.0.1", port), timeout=15,
                                      source_address=("127.0.0.2", 0))
    sender.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 16)
    sender.sendall(f"POST /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\n"
                   f"Host: x\r\nContent-Type: text/plain\r\nContent-Length: {10**11}\r\n\r\n"
                   .encode())
    return sender, 2 * sender.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) + TCP_RMEM_MAX


def send_until_cut_off(sender: socket.socket, buffers: int) -> int:
    """Send as fast as loopback goes until the worker cuts the connection off (or twice
    what it may take, or 30 s); how many bytes were taken."""
    chunk, sent = b"x" * (1 << 20), 0
    deadline = time.monotonic() + 30
    try:
        while sent < 2 * (LINGER_LIMIT + buffers) and time.monotonic() < deadline:
            sender.sendall(chunk)
            sent += len(chunk)
    except OSError:
        pass  # cut off (a reset: the worker closed with bytes unread)
    return sent


def test_a_refused_body_that_keeps_coming_neither_holds_the_worker_nor_is_read_for_long(
        start_cluster):
    """After its 413 the worker reads and drops the body for a moment (so that the client
    sees the answer): another client's handshake is answered meanwhile, and a sender as
    fast as loopback goes is cut off once LINGER_LIMIT bytes were dropped, not read for
    the whole linger."""
    cluster = start_cluster(APP, workers=1)
    lingerer = worker(cluster)
    lingerer.cpu_affinity([0])  # the sender shares the worker's CPU at a higher priority, so
    lingerer.nice(19)  # that the worker's reads never find the socket empty
    sender, buffers = refused_sender(cluster.port)
    sent: list[int] = []

    def send() -> None:  # as fast as it can, so the worker always has bytes to read
        os.sched_setaffinity(0, {0})  # this thread only
        sent.append(send_until_cut_off(sender, buffers))

    thread = threading.Thread(target=send)
    thread.start()
    try:
        cluster.wait_log("refused a POST body")
        assert rawclient.handshake(cluster.port, "127.0.0.3", timeout=60)
    finally:
        thread.join(60)
        sender.close()
    assert sent and sent[0] <= LINGER_LIMIT + buffers, f"{sent} bytes taken after the 413"


@pytest.mark.parametrize("runtime", ["asgi", "gevent", "threading"])
def test_every_runtime_cuts_a_refused_body_off_at_the_linger_limit(start_cluster, runtime):
    """The eventlet test above, for the other runtimes' 413 (the asyncio guard, gevent's
    handler, the threading poller): a sender as fast as loopback goes is cut off once
    LINGER_LIMIT bytes were dropped, and the worker serves on."""
    cluster = start_cluster(RUNTIME_TARGETS[runtime], workers=1)
    sender, buffers = refused_sender(cluster.port)
    try:
        sent = send_until_cut_off(sender, buffers)
    finally:
        sender.close()
    assert sent <= LINGER_LIMIT + buffers, f"{sent:,} bytes taken after the 413"
    assert rawclient.handshake(cluster.port, "127.0.0.3")


def test_a_fragmented_oversized_message_is_refused_before_it_is_buffered(start_cluster):
    """36 MB in 900 KB fragments (each under the 1 MB limit): refused within the limit."""
    cluster = start_cluster(APP, workers=1)
    proc = worker(cluster)
    attacker = rawclient.websocket(cluster.port, "127.0.0.2", timeout=30)
    stalls: list[float] = []
    done = threading.Event()

    def other_client():
        while not done.is_set():
            started = time.monotonic()
            rawclient.handshake(cluster.port, "127.0.0.3")
            stalls.append(time.monotonic() - started)
            time.sleep(0.05)

    thread = threading.Thread(target=other_client)
    rss_before = peak = proc.memory_info().rss
    thread.start()
    chunk = b"x" * 900_000
    sent = 0
    try:
        attacker.sendall(rawclient.frame(1, b"4" + chunk, fin=False))
        for _ in range(39):
            attacker.sendall(rawclient.frame(0, chunk, fin=False))
            sent += 1
            peak = max(peak, proc.memory_info().rss)
    except (BrokenPipeError, ConnectionResetError):
        pass
    finally:
        for _ in range(20):
            peak = max(peak, proc.memory_info().rss)
            time.sleep(0.1)
        done.set()
        thread.join(30)
    assert sent < 39, "the worker read all 36 MB"
    assert (peak - rss_before) < 30e6, f"RSS grew {(peak - rss_before) / 1e6:.0f} MB"
    assert stalls and max(stalls) < 8, f"the other client waited {max(stalls):.1f} s"
    attacker.close()


def read_all(sock: socket.socket) -> bytes:
    try:
        return rawclient.read_to_eof(sock)
    except (ConnectionResetError, TimeoutError):
        return b""


def test_an_invalid_websocket_frame_gets_no_traceback(start_cluster):
    cluster = start_cluster(APP, workers=1)
    (pid,) = cluster.worker_pids()
    sock = rawclient.websocket(cluster.port)
    sock.sendall(rawclient.frame(1, b"zz"))  # not an Engine.IO packet
    answer = read_all(sock)
    sock.close()
    assert b"Traceback" not in answer and b"HTTP/1.1 500" not in answer, answer[:300]
    assert answer.endswith(b"\x88\x02\x03\xf3"), answer[:300]  # close 1011, then the end
    cluster.wait_log(f"[{pid}] [ERROR] worker {pid}: websocket of 127.0.0.1 failed")
    assert "Traceback" in cluster.log


def test_a_client_gone_before_its_websocket_101_is_a_debug_line_not_a_traceback(start_cluster):
    """A client that asks for a websocket and resets the connection before the 101 is
    written (one of thousands leaving in a storm) costs one DEBUG line, not an ERROR with
    a traceback; the worker goes on serving."""
    cluster = start_cluster(APP, workers=1, args=("--log-level", "debug"))
    (pid,) = cluster.worker_pids()
    os.kill(pid, signal.SIGSTOP)  # the reset lands before the worker reads the request
    try:
        sock = socket.create_connection(("127.0.0.1", cluster.port), timeout=10)
        sock.sendall(b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\n"
                     b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     b"Sec-WebSocket-Version: 13\r\n\r\n")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()  # a reset
    finally:
        os.kill(pid, signal.SIGCONT)
    cluster.wait_log(f"[{pid}] [DEBUG] worker {pid}: 127.0.0.1 went before its websocket's 101")
    rawclient.websocket(cluster.port).close()
    assert "Traceback" not in cluster.log and "[ERROR]" not in cluster.log, cluster.log


def test_an_exception_in_the_app_reaches_the_log_not_the_client(start_cluster):
    cluster = start_cluster(APP, workers=1)
    (pid,) = cluster.worker_pids()
    answer = rawclient.http(cluster.port, b"GET /anything HTTP/1.1\r\nHost: x\r\n"
                                          b"Connection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 500 "), answer[:300]
    assert answer.endswith(b"\r\n\r\n") and b"secret" not in answer, answer
    cluster.wait_log(f"[{pid}] [ERROR] worker {pid}: GET /anything failed")
    assert "secret internal detail from the app" in cluster.log

    sock = rawclient.websocket(cluster.port)
    sock.sendall(rawclient.frame(1, b"40"))  # connect to "/"
    frames = [rawclient.read_frame(sock)[1]]
    while not frames[-1].startswith(b"40") and len(frames) < 5:  # the upgrade's noop may come
        frames.append(rawclient.read_frame(sock)[1])
    assert frames[-1].startswith(b"40"), frames
    sock.sendall(rawclient.frame(1, b'42["fail"]'))  # the handler raises
    # Handlers run in order (async_handlers=False): whatever the failure sent comes before
    # the next call's answer. (Read to the end, the socket closes at the ping timeout only.)
    sock.sendall(rawclient.frame(1, b'421["whoami"]'))
    frames = [rawclient.read_frame(sock)[1]]
    while not frames[-1].startswith(b"431") and len(frames) < 10:
        frames.append(rawclient.read_frame(sock)[1])
    sock.close()
    answer = b"".join(frames)
    assert frames[-1].startswith(b"431"), frames
    assert b"secret" not in answer and b"Traceback" not in answer, answer[:300]
    cluster.wait_log("secret internal detail from a handler")


def test_one_busy_websocket_does_not_hold_the_worker(start_cluster):
    """20,000 calls sent at once on one websocket (no rate cap, to see the fairness alone):
    another client's handshakes keep being answered while the worker works through them."""
    calls = 20_000
    cluster = start_cluster("tests.apps.chat:sio", workers=1, args=("--websocket-rate", "1e12"))
    busy = rawclient.websocket(cluster.port, "127.0.0.2", timeout=60)
    busy.sendall(rawclient.frame(1, b"40"))
    handshakes: list[tuple[float, float]] = []  # (started, answered)
    done = threading.Event()

    def other_client():
        while not done.is_set():
            started = time.monotonic()
            rawclient.handshake(cluster.port, "127.0.0.3", timeout=60)
            handshakes.append((started, time.monotonic()))
            time.sleep(0.02)

    def acks() -> int:
        seen = b""
        while seen.count(b"431[1]") < calls:
            chunk = busy.recv(1 << 20)
            if not chunk:
                break
            seen += chunk
        return seen.count(b"431[1]")

    thread = threading.Thread(target=other_client)
    thread.start()
    try:
        wait_for(lambda: handshakes, 30, what="the other client's first handshake")
        busy_from = time.monotonic()
        busy.sendall(rawclient.frame(1, b'421["echo",1]') * calls)
        assert acks() == calls
        busy_until = time.monotonic()
    finally:
        done.set()
        thread.join(60)
        busy.close()
    # Served alongside, not after: handshakes kept being answered while the worker worked
    # through the calls, none waiting more than a fraction of that work.
    busy_for = busy_until - busy_from
    during = [(s, e) for s, e in handshakes if busy_from <= s and e <= busy_until]
    slowest = max(e - s for s, e in handshakes)
    print(f"\n{calls} calls took {busy_for:.1f} s; {len(during)} handshakes answered meanwhile, "
          f"the slowest in {slowest:.2f} s")
    assert len(during) >= 3, f"{len(during)} handshakes answered in {busy_for:.1f} s of calls"
    assert slowest < busy_for / 2, f"the other client waited {slowest:.1f} s of {busy_for:.1f} s"


def test_an_aiohttp_worker_past_its_connections_answers_503(start_cluster):
    """aiohttp has no connection limit of its own: the worker enforces --worker-connections."""
    from tests.support.masters import RUNTIME_TARGETS

    cluster = start_cluster(RUNTIME_TARGETS["aiohttp"], workers=1,
                            args=("--worker-connections", "2"))
    handshake = b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n"
    held = []
    try:
        for index in range(2):  # keep-alive connections, each answered and left open
            sock = socket.create_connection(("127.0.0.1", cluster.port), timeout=15,
                                            source_address=(f"127.0.0.{20 + index}", 0))
            held.append(sock)
            sock.sendall(handshake)
            assert sock.recv(65536).startswith(b"HTTP/1.1 200"), "a connection within the limit"
        wait_for(lambda: " is full: 2 connections" in cluster.log, 20,
                 what="the heartbeat to report the worker full")
        answer = rawclient.http(cluster.port, handshake, "127.0.0.22", timeout=15)
        assert answer.startswith(b"HTTP/1.1 503") and answer.endswith(b"Service Unavailable")
        held.pop().close()
        closing = handshake.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")
        wait_for(lambda: rawclient.http(cluster.port, closing, "127.0.0.23").startswith(
            b"HTTP/1.1 200"), 20, what="a connection served once one has closed")
    finally:
        for sock in held:
            sock.close()
    assert "Traceback" not in cluster.log


def test_every_worker_inherits_the_open_files_limit_the_master_raised(start_cluster):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard <= 1024:
        pytest.skip(f"the hard limit on open files is {hard}: nothing to raise")
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))  # the cluster starts low
    try:
        cluster = start_cluster(workers=2)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    workers = wait_for(lambda: cluster.worker_pids() if len(cluster.worker_pids()) == 2 else None,
                       30, what="two workers")
    for pid in (cluster.pid, *workers):
        assert psutil.Process(pid).rlimit(psutil.RLIMIT_NOFILE) == (hard, hard)
