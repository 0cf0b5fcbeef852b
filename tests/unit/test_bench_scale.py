"""The scale benchmark's choices that need no measurement: the reconnect backoff, the
options, and where its section of benchmarks.md goes."""
from __future__ import annotations

import random
from pathlib import Path

import pytest

from bench import report, scale, scale_report
from bench.fleet import RECONNECT_DELAY_MAX, backoff, failure_kind, source
from bench.loadgen import MAX_CLIENT_SOURCES, ProtocolError


@pytest.mark.parametrize(("attempt", "low", "high"), [(0, 0.5, 1.5), (1, 1.0, 3.0), (2, 2.0, 5.0),
                                                      (9, 2.5, 5.0)])
def test_reconnects_wait_as_socket_io_clients_do(attempt: int, low: float, high: float) -> None:
    rand = random.Random(7)
    waits = [backoff(attempt, rand) for _ in range(2000)]
    assert low <= min(waits) and max(waits) <= min(high, RECONNECT_DELAY_MAX)
    assert max(waits) - min(waits) > (high - low) / 2  # randomized, not a fixed delay


def test_every_client_has_its_own_source_until_they_run_out() -> None:
    assert source(0) != source(1)
    assert source(MAX_CLIENT_SOURCES) == source(0)


@pytest.mark.parametrize(("exc", "kind"), [
    (TimeoutError(), "timeout"), (ConnectionRefusedError(), "refused"),
    (ConnectionResetError(), "reset"),
    (ProtocolError("bad upgrade: b'HTTP/1.1 503 Service Unavailable'"), "http 503"),
    (ProtocolError("connection lost"), "lost"),
    (ProtocolError("connection lost before the upgrade"), "lost before the upgrade"),
    (OSError(99, "no address"), "OSError")])
def test_a_failed_reconnect_is_counted_by_what_it_met(exc: BaseException, kind: str) -> None:
    assert failure_kind(exc) == kind


def test_the_storm_row_says_what_the_failed_attempts_met() -> None:
    kinds = scale.merged_kinds([{"timeout": 2, "http 503": 5}, {"timeout": 4}])
    assert list(kinds.items()) == [("timeout", 6), ("http 503", 5)]
    storm = {"failed_attempts": 11, "failed_by_kind": kinds}
    assert scale_report.failed_attempts(storm) == "11 (timeout 6, http 503 5)"
    assert scale_report.failed_attempts({"failed_attempts": 0, "failed_by_kind": {}}) == "0"


def test_a_quick_run_is_small_and_needs_two_workers() -> None:
    args = scale.parse_args(["--quick"])
    assert (args.clients, args.hold, args.workers, args.procs) == (5000, 20.0, 2, 1)
    assert scale.parse_args([]).workers == 8 and scale.parse_args([]).procs == 10


@pytest.mark.parametrize("argv", [["--targets", "nginx"], ["--clients", "100000", "--workers", "4"],
                                  ["--stages", "0,1"], ["--stages", "half"],
                                  ["--clients", "50000", "--procs", "2"]])
def test_a_bad_option_is_one_line_and_exit_2(argv: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        scale.parse_args(argv)
    assert exc.value.code == 2
    [line] = [x for x in capsys.readouterr().err.splitlines() if x.startswith("python -m")][-1:]
    assert "error:" in line


def _results() -> dict:
    stage = {"clients": 10, "pss_growth_mb": 1.0, "per_client_kb": 50.0,
             "broadcast": {"expected": 10, "delivered": 10, "first_ms": 1.0, "p50_ms": 2.0,
                           "p99_ms": 3.0, "max_ms": 3.0}}
    hold = {"seconds": 5.0, "dropped": 0, "pings": 0, "late_pings": 0, "max_ping_gap_s": 0.0,
            "master_cpu_share": 0.0, "workers_cpu_share": 0.0}
    one = {"label": "1 eventlet process", "clients": 10, "held": 10, "connect_seconds": 1.0,
           "stages": [stage], "hold": hold, "broadcasts": [stage["broadcast"]]}
    cluster = {**one, "label": "sticky-cluster", "stages": [{**stage, "per_client_kb": 53.0}],
               "master_rss_before_mb": 24.0, "master_rss_growth_mb": 0.1}
    return {"clients": 10, "hold": 5.0, "workers": 2, "procs": 1, "minutes": 1.0,
            "started": "now", "load_average_at_start": [0.0] * 3,
            "load_average_at_end": [0.0] * 3,
            "targets": {"eventlet-relay": cluster, "eventlet-one": one}}


def test_the_verdicts_compare_a_cluster_with_one_process_of_its_runtime() -> None:
    lines = scale_report.verdicts(_results())
    assert any("**not met**" in x and "1.060× one process" in x for x in lines)
    assert any("**met**" in x and "10 of 10 clients held" in x for x in lines)


def test_the_memory_verdict_says_the_figure_read_again_at_the_end_of_the_hold() -> None:
    results = _results()
    cluster, one = results["targets"]["eventlet-relay"], results["targets"]["eventlet-one"]
    cluster["hold"] = {**cluster["hold"], "per_client_kb": 52.0}
    one["hold"] = {**one["hold"], "per_client_kb": 51.0}
    [line] = [x for x in scale_report.verdicts(results) if "memory per idle client" in x]
    assert "1.060× one process" in line
    assert "at the end of the hold 52.0 KB against 51.0 (1.020×)" in line


def test_the_section_replaces_its_last_run_and_keeps_the_rest(tmp_path: Path,
                                                              monkeypatch) -> None:
    monkeypatch.setattr(scale_report, "chart", lambda path, results: None)
    monkeypatch.setattr(scale_report, "machine", lambda: [("cpu", "2 cores")])
    page = tmp_path / "benchmarks.md"
    page.write_text("# Benchmarks\n\nbench.run's part\n")
    scale_report.write(tmp_path, _results())
    scale_report.write(tmp_path, _results())
    text = page.read_text()
    assert text.count(scale_report.BEGIN) == 1 and text.count(report.HAND_WRITTEN) == 1
    assert text.index(report.HAND_WRITTEN) < text.index(scale_report.BEGIN)
    assert scale_report.BEGIN in "\n".join(report.hand_written(page))  # bench.run keeps it
