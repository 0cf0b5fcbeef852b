"""The scale benchmark's scenarios in small (``python -m bench.scale`` runs them at 100,000):
clients held, a broadcast to all of them, a killed worker's clients all back, and the
master alone handing off to workers that close what they get (``bench.closer``).

They assert what happens (none dropped, all delivered, all back, every connection handed
off), never how fast. Each holds thousands of sockets and keeps the cores busy while it
connects: one at a time (one ``xdist_group``).
"""
from __future__ import annotations

import socket
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from bench import ceiling, scale
from bench.fleet import Fleets
from tests.support.masters import ClusterProcess
from tests.support.ports import free_port
from tests.support.waiting import wait_for

pytestmark = pytest.mark.xdist_group("scale")

CLIENTS = 2000


def test_clients_held_get_a_broadcast_to_all_and_come_back_when_their_worker_dies(
        start_cluster) -> None:
    cluster = start_cluster("bench.app:sio", workers=2)
    fleets = Fleets(scale.fleet_args(cluster.url, CLIENTS, 100), procs=2)
    try:
        answers = fleets.ask(("connect", CLIENTS, time.monotonic() + 120), 150)
        assert sum(a["live"] for a in answers) == CLIENTS
        fleets.ask(("mark",), 30)
        time.sleep(2)
        held = scale.stats(fleets)
        assert (held["live"], held["drops"]) == (CLIENTS, [])
        assert sorted(held["pids"]) == sorted(cluster.worker_pids())  # both workers serve

        shot = scale.broadcast(fleets, 1, CLIENTS)
        assert shot["delivered"] == CLIENTS

        storm = scale.kill_storm(fleets, CLIENTS, timeout=60)
        assert storm["live"] == CLIENTS and storm["back"] == storm["killed_worker_clients"] > 0
        assert storm["others_dropped"] == 0
    finally:
        fleets.stop()


def _handoffs(status_port: int) -> int:
    try:
        return ceiling.handoffs(status_port)
    except OSError:
        return -1


def test_the_master_alone_hands_off_every_connection_to_workers_that_close_it(
        tmp_path: Path) -> None:
    port, status = free_port(), free_port()
    master = ClusterProcess(["run", "bench.app:sio", "--workers", "2", "--bind",
                             f"127.0.0.1:{port}", "--status-bind", f"127.0.0.1:{status}"],
                            tmp_path / "master.log", command=[sys.executable, "-m", "bench.closer"])
    try:
        master.wait_log("cluster ready")
        made = ceiling.hammer(port, 1.0, concurrency=16, procs=1)
        assert made > 0
        wait_for(lambda: _handoffs(status) == made, 30, what=f"{made} hand-offs")
        with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
            client.sendall(ceiling.REQUEST)
            try:
                answer = client.recv(100)
            except ConnectionResetError:  # closed with the request unread: a reset
                answer = b""
            assert answer == b""  # handed off and closed: no answer
        with urllib.request.urlopen(f"http://127.0.0.1:{status}/metrics", timeout=10) as r:
            assert 'sticky_cluster_connections_total{outcome="dropped"} 0' in r.read().decode()
    finally:
        master.stop()
