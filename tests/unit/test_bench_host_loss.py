"""bench.host_loss's choices that need no measurement: the nginx for thousands of clients
and each lost client's time back after a kill."""
from __future__ import annotations

import pytest

from bench import scale
from bench.balancer_polling import WORKER_CONNECTIONS, nginx_conf, round_robin

T0 = 100.0
"""The kill."""


def test_each_lost_client_counts_from_the_kill_until_it_is_back() -> None:
    drops = [(1, 11, T0 + 0.01), (2, 11, T0 + 0.02), (3, 11, T0 + 0.02)]
    back = [(T0 + 0.9, 1), (T0 + 1.4, 2)]
    lost, after = scale.back_after(drops, back, T0)
    assert lost == 3
    assert sorted(after) == pytest.approx([0.9, 1.4])  # client 3 is not back


def test_a_client_lost_twice_is_one_client_back_at_its_last_reconnect() -> None:
    drops = [(1, 11, T0), (1, 22, T0 + 2.0)]
    assert scale.back_after(drops, [(T0 + 1.0, 1)], T0) == (1, [])  # lost again since
    lost, after = scale.back_after(drops, [(T0 + 1.0, 1), (T0 + 3.5, 1)], T0)
    assert (lost, after) == (1, [pytest.approx(3.5)])


def test_the_spread_of_the_times_back() -> None:
    assert scale.spread([]) == {"p50": None, "p99": None, "max": None}
    seconds = [i / 100 for i in range(1, 201)]  # 0.01 .. 2.0
    assert scale.spread(list(reversed(seconds))) == {"p50": 1.01, "p99": 1.99, "max": 2.0}


def test_nginx_for_thousands_of_clients_stays_under_the_fd_limit() -> None:
    conf = nginx_conf("/p", round_robin({1: ("127.0.0.11", 5001)}, 8080, reuseport=True), 7)
    assert "worker_processes 7;" in conf and "worker_shutdown_timeout 3s;" in conf
    assert "worker_rlimit_nofile 20000;" in conf
    assert f"worker_connections {WORKER_CONNECTIONS};" in conf and WORKER_CONNECTIONS < 20_000
    assert "listen 127.0.0.1:8080 reuseport;" in conf


def test_nginx_keeps_one_worker_and_one_listener_for_its_old_callers() -> None:
    conf = nginx_conf("/p", round_robin({1: ("127.0.0.11", 5001)}, 8080))
    assert "worker_processes 1;" in conf and "listen 127.0.0.1:8080;" in conf
