"""No connection is accepted and then dropped: while no worker serves (the cluster is
booting, or every worker is respawning), clients wait in the listen backlog.

Handshake loops run against a cluster from the moment it starts; each connection is
either refused (nothing listens yet: the client retries, as a browser would) or
answered. A connection that is accepted and closed without an answer is a drop.
"""
from __future__ import annotations

import errno
import os
import signal
import socket
import threading
import time

from tests.support.clients import source_address
from tests.support.ports import free_port
from tests.support.waiting import wait_for

HANDSHAKE = b"GET /socket.io/?EIO=4&transport=polling HTTP/1.0\r\nHost: test\r\n\r\n"


class HandshakeLoops:
    """``count`` threads, each doing handshakes (one connection each) until told to stop.

    Bounded: each thread stops after ``limit`` answers or at ``deadline``.
    """

    def __init__(self, port: int, count: int, limit: int, seconds: float) -> None:
        self.port = port
        self.limit = limit
        self.deadline = time.monotonic() + seconds
        self.answered = 0
        self.refused = 0
        self.dropped: list[str] = []
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._loop, args=(source_address(300 + i),))
                         for i in range(count)]

    def __enter__(self) -> HandshakeLoops:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        for thread in self._threads:
            thread.join()

    def _loop(self, source: str) -> None:
        answered = 0
        while answered < self.limit and time.monotonic() < self.deadline and not self.stopping.is_set():
            outcome = self._one(source)
            with self._lock:
                if outcome == "answered":
                    answered += 1
                    self.answered += 1
                elif outcome == "refused":
                    self.refused += 1
                else:
                    self.dropped.append(outcome)
            if outcome == "refused":
                time.sleep(0.01)

    def _one(self, source: str) -> str:
        with socket.socket() as sock:
            sock.bind((source, 0))
            sock.settimeout(30)  # a client waiting in the backlog waits for the workers' boot
            try:
                sock.connect(("127.0.0.1", self.port))
            except ConnectionRefusedError:
                return "refused"
            try:
                sock.sendall(HANDSHAKE)
                answer = b""
                while chunk := sock.recv(65536):
                    answer += chunk
            except OSError as exc:
                return f"{errno.errorcode.get(exc.errno or 0, exc)} after {len(answer)} bytes"
        if answer.startswith(b"HTTP/1.1 200") and b'0{"sid"' in answer:
            return "answered"
        return f"closed after {answer[:40]!r}"


def test_connections_at_cold_start_wait_for_a_worker(start_cluster):
    port = free_port()
    with HandshakeLoops(port, count=8, limit=40, seconds=60) as loops:
        cluster = start_cluster(workers=2, port=port, wait=False)
        cluster.wait_log("cluster ready", timeout=60)
        wait_for(lambda: loops.answered >= 8 * 10, 60, what="handshakes answered")
    assert loops.dropped == [], loops.dropped[:5]
    assert loops.answered >= 8 * 10
    cluster.stop()
    assert ", 0 dropped" in cluster.log


def test_connections_wait_while_every_worker_respawns(start_cluster):
    cluster = start_cluster(workers=2)
    pids = cluster.worker_pids()
    for pid in pids:  # what they held dies with them; what comes next must wait
        os.kill(pid, signal.SIGKILL)
    for pid in pids:
        cluster.wait_log(f"worker {pid} (slot", count=3)  # booting, ready, died
    with HandshakeLoops(cluster.port, count=6, limit=20, seconds=60) as loops:
        cluster.wait_log("ready after", count=4, timeout=60)  # both slots respawned
        wait_for(lambda: loops.answered >= 6 * 20, 60, what="handshakes after the respawn")
    assert loops.dropped == [], loops.dropped[:5]
    cluster.stop()
    assert ", 0 dropped" in cluster.log
