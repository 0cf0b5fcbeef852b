"""bench.host_loss's choices that need no measurement: the nginx for thousands of clients,
the load split, each lost client's time back after a kill, and the options."""
from __future__ import annotations

import re

import pytest

from bench import host_loss, host_loss_fleet, scale
from bench.balancer_polling import WORKER_CONNECTIONS, nginx_conf, round_robin
from bench.loadgen import MAX_CLIENT_SOURCES

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


@pytest.mark.parametrize("sources", [3, 8])
def test_nginx_connects_to_the_hosts_from_several_addresses(sources: int) -> None:
    """One source address runs out of ephemeral ports at tens of thousands of websockets:
    nginx then takes the live hosts for dead ("no live upstreams")."""
    conf = round_robin({1: ("127.0.0.11", 5001)}, 8080, sources=sources)
    shares = re.findall(r"^\s+([\d.]+)% (127\.1\.0\.\d+);$", conf, re.M)
    assert len(shares) == sources - 1 and f"* 127.1.0.{sources};" in conf
    assert all(len(share.split(".")[1]) <= 2 for share, _ in shares)  # nginx takes 2 decimals
    assert sum(float(share) for share, _ in shares) < 100
    assert "proxy_bind $upstream_source;" in conf
    assert "proxy_bind" not in round_robin({1: ("127.0.0.11", 5001)}, 8080)


@pytest.mark.parametrize(("clients", "nginx", "procs"), [(60, 2, 2), (3000, 2, 2),
                                                          (30_000, 7, 4), (60_000, 13, 7)])
def test_the_load_is_split_under_the_fd_limit(clients: int, nginx: int, procs: int) -> None:
    assert host_loss_fleet.nginx_workers(clients) == nginx
    assert 2 * (clients + host_loss_fleet.NEWCOMERS) / nginx <= WORKER_CONNECTIONS / 2
    assert host_loss_fleet.load_procs(clients) == procs
    assert (clients + host_loss_fleet.NEWCOMERS) / procs <= scale.FD_PER_WORKER


def test_the_two_hosts_left_hold_every_client_each_from_its_own_address() -> None:
    assert host_loss_fleet.most_clients(1) == 2 * scale.FD_PER_WORKER
    assert host_loss_fleet.most_clients(8) == MAX_CLIENT_SOURCES - host_loss_fleet.NEWCOMERS


def test_the_fleet_result_names_clients_not_events() -> None:
    storm = {"live": 3000, "dropped": 1001, "back": 1001, "failed_attempts": 0,
             "last_back_s": 1.6, "clients_lost": 1000, "clients_back": 1000,
             "back_after_s": {"p50": 1.0, "p99": 1.5, "max": 1.6},
             "killed_worker_clients": 1000, "others_dropped": 0}
    assert host_loss_fleet.result(3000, 3000, storm, 10) == {
        "mode": "fleet", "clients": 3000, "connected": 3000, "on_killed_host": 1000,
        "lost": 1000, "back": 1000, "failed": 0,
        "back_after_kill_s": {"p50": 1.0, "p99": 1.5, "max": 1.6}, "others_dropped": 0,
        "live_after": 3000, "new": 10}


def test_the_default_mode_is_60_python_socketio_clients() -> None:
    args = host_loss.parse_args([])
    assert (args.fleet, args.clients, args.delay) == (False, 60, 0.5)
    args = host_loss.parse_args(["--fleet", "--workers", "2"])
    assert (args.fleet, args.clients, args.workers, args.delay) == (True, 3000, 2, None)


@pytest.mark.parametrize("argv", [["--fleet", "--delay", "1"], ["--fleet", "--clients", "40000"],
                                  ["--clients", "0"], ["--workers", "0"]])
def test_a_bad_option_is_one_line_and_exit_2(argv: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        host_loss.parse_args(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert err[-1].startswith("python -m bench.host_loss: error: ") and "Traceback" not in err
