"""The scale benchmark: N websocket clients held on one host, a broadcast to all, storms.

    python -m bench.scale [--clients 100000] [--hold 180] [--targets eventlet-relay,...]
                          [--workers 8] [--quick] [--write]

For each target (:data:`TARGETS`), started fresh: the clients (:mod:`bench.fleet`, spread
over ``--procs`` load processes for the fd limit, each client from its own loopback address)
connect in stages (``--stages``); at each stage the memory of every server process (PSS)
and one broadcast to the room of all of them are measured. Then they are held for
``--hold`` seconds (drops, late pings, the master's RSS and CPU, the workers' CPU at idle,
the memory per client again at its end),
broadcast to ``--broadcasts`` times more, and, on a cluster, the storms: one worker killed
with ``SIGKILL`` (its clients reconnect with socket.io-client's default backoff) and a
rolling restart (``HUP``). ``ceiling`` is the master alone against nginx and HAProxy
(:mod:`bench.ceiling`). The results go to ``--json``; ``--write`` also writes the scale
section of docs/benchmarks.md and docs/scale.png (:mod:`bench.scale_report`).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import time
from array import array
from pathlib import Path
from typing import Any, Callable, Iterable

import psutil

from bench import ceiling, loadgen, scale_report
from bench.fleet import Fleets
from bench.measure import cpu_seconds, memory
from bench.targets import (ROOT, Cluster, GeventGunicorn, RedisServer, Standalone, Target,
                           Uvicorn)

FD_PER_WORKER = 19_000
"""Most clients one worker (or one process) is given: the hard fd limit (20,000 here) less
room for the worker's own files."""

CLIENTS_PER_LOAD_PROCESS = 10_000
"""Clients per load process (each holds one fd per client)."""

TARGETS = ("eventlet-relay", "eventlet-redis", "asyncio-relay", "asyncio-redis",
           "gevent-relay", "gevent-redis", "eventlet-one", "asyncio-one", "gevent-one",
           "ceiling")
"""What ``--targets`` may name: a cluster (runtime-adapter), one process of a runtime (its
most clients: eventlet's ``bench.standalone``, one uvicorn, one ``gunicorn -k gevent``), or
the master's ceiling."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=100_000, help="clients held (default 100000)")
    ap.add_argument("--hold", type=float, default=180.0, help="seconds held (default 180)")
    ap.add_argument("--targets", default=",".join(TARGETS),
                    help=f"comma-separated, of: {', '.join(TARGETS)} (default all)")
    ap.add_argument("--workers", type=int, default=None,
                    help="cluster workers (default: enough for the fd limit, at least 8 for "
                         "100,000 clients: clients / 12,500 rounded up, at least 2)")
    ap.add_argument("--one-process-clients", type=int, default=FD_PER_WORKER,
                    help=f"clients of one process (default {FD_PER_WORKER:,}, its fd limit; "
                         "at most --clients)")
    ap.add_argument("--stages", default="0.1,0.25,0.5,1",
                    help="fractions of the clients at which memory and a broadcast are "
                         "measured while connecting (default 0.1,0.25,0.5,1)")
    ap.add_argument("--broadcasts", type=int, default=3,
                    help="broadcasts to all after the hold (default 3)")
    ap.add_argument("--procs", type=int, default=None,
                    help=f"load processes (default clients / {CLIENTS_PER_LOAD_PROCESS:,} "
                         "rounded up)")
    ap.add_argument("--connect-concurrency", type=int, default=20,
                    help="connects in flight per load process while connecting (default 20)")
    ap.add_argument("--storm-timeout", type=float, default=120.0,
                    help="seconds a storm's clients get to be back (default 120)")
    ap.add_argument("--ceiling-seconds", type=float, default=10.0,
                    help="seconds of connections against each of master, nginx, HAProxy "
                         "(default 10)")
    ap.add_argument("--quick", action="store_true",
                    help="5,000 clients held 20 s, 2 workers (unless given)")
    ap.add_argument("--server-log", default=None, metavar="PATH",
                    help="write each cluster's log (master and workers) to PATH with the "
                         "target's name before the suffix: PATH.eventlet-relay.log")
    ap.add_argument("--json", default=None,
                    help="write the results here (default docs/scale.json with --write)")
    ap.add_argument("--write", action="store_true",
                    help="write the scale section of docs/benchmarks.md and docs/scale.png")
    args = ap.parse_args(argv)
    if args.quick:
        given = set(a.split("=")[0] for a in (argv if argv is not None else sys.argv[1:]))
        if "--clients" not in given:
            args.clients = 5_000
        if "--hold" not in given:
            args.hold = 20.0
    args.targets = [t for t in args.targets.split(",") if t]
    unknown = [t for t in args.targets if t not in TARGETS]
    if unknown or not args.targets:
        ap.error(f"--targets: unknown {', '.join(unknown) or '(none)'}; "
                 f"choose from {', '.join(TARGETS)}")
    try:
        args.stages = sorted({float(f) for f in args.stages.split(",")} | {1.0})
    except ValueError:
        ap.error(f"--stages: fractions like 0.1,0.5,1, not {args.stages!r}")
    if not all(0 < f <= 1 for f in args.stages):
        ap.error("--stages: each fraction in (0, 1]")
    if not 1 <= args.clients < loadgen.MAX_CLIENT_SOURCES * 2:
        ap.error(f"--clients: 1 to {loadgen.MAX_CLIENT_SOURCES * 2 - 1:,}")
    if args.hold < 0 or args.broadcasts < 0 or args.connect_concurrency < 1:
        ap.error("--hold >= 0, --broadcasts >= 0, --connect-concurrency >= 1")
    if args.workers is None:
        args.workers = max(2, math.ceil(args.clients / 12_500))
    if args.workers < 1 or args.clients > args.workers * FD_PER_WORKER:
        ap.error(f"--workers: {args.clients:,} clients need at least "
                 f"{math.ceil(args.clients / FD_PER_WORKER)} workers (fd limit)")
    if args.procs is None:
        args.procs = math.ceil(args.clients / CLIENTS_PER_LOAD_PROCESS)
    if args.procs < 1 or args.clients / args.procs > FD_PER_WORKER:
        ap.error(f"--procs: at least {math.ceil(args.clients / FD_PER_WORKER)} (fd limit)")
    if args.write and args.json is None:
        args.json = str(ROOT / "docs" / "scale.json")
    return args


def fleet_args(url: str, clients: int, concurrency: int) -> argparse.Namespace:
    """What the fleet processes need of the load generator's options."""
    return argparse.Namespace(target=loadgen.parse_target(url, "/socket.io/"), clients=clients,
                              connect_concurrency=concurrency, timeout=20.0)


def make_target(name: str, args: argparse.Namespace, redis: RedisServer) -> Target:
    """The target ``name`` of :data:`TARGETS` (not ``ceiling``)."""
    runtime, _, kind = name.partition("-")
    if kind == "one":
        return {"eventlet": lambda: Standalone(connections=FD_PER_WORKER), "asyncio": Uvicorn,
                "gevent": lambda: GeventGunicorn(FD_PER_WORKER)}[runtime]()
    return Cluster(args.workers, redis if kind == "redis" else None, runtime,
                   options=["--worker-connections", str(FD_PER_WORKER)])


def _rss(pid: int | None) -> float:
    try:
        return psutil.Process(pid).memory_info().rss if pid else 0.0
    except psutil.Error:
        return 0.0


def latencies(answers: list[bytes]) -> array:
    out = array("d")
    for raw in answers:
        out.frombytes(raw)
    return out


def broadcast(fleets: Fleets, seq: int, expected: int, timeout: float = 60.0) -> dict[str, Any]:
    """One emit to the room of every client, from a client of the first load process that
    has one connected: how many got it, and when (ms after the emit: first, p50, p99, max)."""
    for index in range(len(fleets.conns)):
        if fleets.ask(("send", seq), 60, only=index)[0] is not None:
            break
    lat = sorted(latencies(fleets.ask(("deliveries", seq, timeout), timeout + 10)))
    n = len(lat)

    def ms(q: float) -> float | None:
        return round(lat[min(n - 1, int(q * n))] * 1000, 1) if n else None

    return {"expected": expected, "delivered": n, "first_ms": ms(0), "p50_ms": ms(0.5),
            "p99_ms": ms(0.99), "max_ms": ms(1.0)}


def merged_kinds(counts: Iterable[dict[str, int]]) -> dict[str, int]:
    """Failed attempts by what they met (:func:`bench.fleet.failure_kind`), added up over
    the fleets, most first."""
    total: dict[str, int] = {}
    for count in counts:
        for kind, n in count.items():
            total[kind] = total.get(kind, 0) + n
    return dict(sorted(total.items(), key=lambda item: -item[1]))


def totals(stats: list[dict[str, Any]]) -> dict[str, Any]:
    """The fleets' counters added up."""
    pids: dict[int, int] = {}
    for s in stats:
        for pid, n in s["pids"].items():
            pids[pid] = pids.get(pid, 0) + n
    connect = latencies([s["connect_seconds"] for s in stats])
    return {"live": sum(s["live"] for s in stats), "pids": pids,
            "drops": [d for s in stats for d in s["drops"]],
            "back": [b for s in stats for b in s["back"]],
            "failures": sum(n for s in stats for n in s["failures"].values()),
            "failure_kinds": merged_kinds(s["failures"] for s in stats),
            "pings": sum(s["pings"] for s in stats),
            "late_pings": sum(s["late_pings"] for s in stats),
            "max_ping_gap": max((s["max_ping_gap"] for s in stats), default=0.0),
            "ping_interval": max((s["ping_interval"] for s in stats), default=0.0),
            "connect": connect}


def stats(fleets: Fleets) -> dict[str, Any]:
    return totals(fleets.ask(("stats",), 30))


def connect_stages(fleets: Fleets, target: Target, args: argparse.Namespace, n: int,
                   base_pss: float, log: Callable[[str], None]) -> tuple[list[dict], float]:
    """Connect ``n`` clients stage by stage; per stage: clients, PSS growth, a broadcast.
    Also the seconds spent connecting (the stages' measurements left out)."""
    stages, spent = [], 0.0
    for k, fraction in enumerate(args.stages):
        upto = max(1, round(n * fraction))
        answers = fleets.ask(("connect", upto, loadgen.now() + 600), 700)
        spent += max(a["seconds"] for a in answers)
        live = sum(a["live"] for a in answers)
        time.sleep(2.0)  # let the last connects settle before reading memory
        mem = memory(target)
        stage = {"clients": live, "pss_growth_mb": (mem["pss"] - base_pss) / 2**20,
                 "per_client_kb": (mem["pss"] - base_pss) / max(1, live) / 1024,
                 "broadcast": broadcast(fleets, k, live)}
        log(f"  {live:,} clients: {stage['per_client_kb']:.1f} KB each, broadcast p99 "
            f"{stage['broadcast']['p99_ms']} ms ({stage['broadcast']['delivered']:,} got it)")
        stages.append(stage)
    return stages, spent


def hold(fleets: Fleets, target: Target, seconds: float) -> dict[str, Any]:
    """Hold the clients ``seconds``: drops, pings, the master's RSS and CPU, the workers'
    CPU (at idle, but for the pings)."""
    fleets.ask(("mark",), 30)
    workers = target.serving()
    rss0 = _rss(target.master_pid)
    master0 = cpu_seconds(target.master_pid)
    workers0 = sum(cpu_seconds(p.pid) for p in workers)
    t0 = time.monotonic()
    rss_max = rss0
    while time.monotonic() - t0 < seconds:
        time.sleep(min(10.0, max(0.0, seconds - (time.monotonic() - t0))))
        rss_max = max(rss_max, _rss(target.master_pid))
    wall = time.monotonic() - t0
    s = stats(fleets)
    return {"seconds": round(wall, 1), "live_after": s["live"], "dropped": len(s["drops"]),
            "reconnect_failures": s["failures"], "pings": s["pings"],
            "late_pings": s["late_pings"], "max_ping_gap_s": round(s["max_ping_gap"], 2),
            "ping_interval_s": s["ping_interval"],
            "master_rss_mb": round(_rss(target.master_pid) / 2**20, 1),
            "master_rss_growth_during_hold_mb": round((rss_max - rss0) / 2**20, 2),
            "master_cpu_share": round((cpu_seconds(target.master_pid) - master0) / wall, 4),
            "workers_cpu_share": round((sum(cpu_seconds(p.pid) for p in workers) - workers0)
                                       / wall, 3)}


def back_after(drops: list[tuple[int, int, float]], back: list[tuple[float, int]],
               t_start: float) -> tuple[int, list[float]]:
    """The clients lost (``drops``: slot, pid, when) and, for each one connected again since
    its last loss (``back``: when, slot), the seconds from ``t_start`` until its last
    reconnect: how many were lost, and those times (unordered)."""
    lost: dict[int, float] = {}
    for slot, _pid, when in drops:
        lost[slot] = max(when, lost.get(slot, when))
    last: dict[int, float] = {}
    for when, slot in back:
        last[slot] = max(when, last.get(slot, when))
    return len(lost), [last[slot] - t_start for slot, when in lost.items()
                       if last.get(slot, when) > when]


def spread(seconds: list[float]) -> dict[str, float | None]:
    """p50, p99 and max of ``seconds`` (None when there are none), to the millisecond."""
    s = sorted(seconds)
    return {name: round(s[min(len(s) - 1, int(q * len(s)))], 3) if s else None
            for name, q in (("p50", 0.5), ("p99", 0.99), ("max", 1.0))}


def wait_back(fleets: Fleets, n: int, t_start: float, timeout: float) -> dict[str, Any]:
    """Wait until all ``n`` clients are connected again (or ``timeout``); the storm's figures,
    with each lost client's time back after ``t_start`` (``back_after_s``)."""
    deadline = t_start + timeout
    while True:
        time.sleep(0.5)
        s = stats(fleets)
        if (s["live"] >= n and s["drops"]) or loadgen.now() > deadline:
            break
    last = max((t for t, _ in s["back"]), default=None)
    lost, after = back_after(s["drops"], s["back"], t_start)
    return {"live": s["live"], "dropped": len(s["drops"]), "back": len(s["back"]),
            "failed_attempts": s["failures"], "failed_by_kind": s["failure_kinds"],
            "last_back_s": round(last - t_start, 2) if last is not None else None,
            "clients_lost": lost, "clients_back": len(after), "back_after_s": spread(after),
            "drops": s["drops"]}


def kill_storm(fleets: Fleets, n: int, timeout: float,
               victims: set[int] | None = None) -> dict[str, Any]:
    """``SIGKILL`` the ``victims`` (pids, all at once; by default the worker that holds the
    most clients); until all are back. ``killed_worker_clients``: the clients the victims
    held; ``others_dropped``: the clients of other processes lost; ``clients_per_worker``:
    how the clients are spread over the workers at the end, most first."""
    fleets.ask(("mark",), 30)
    pids = stats(fleets)["pids"]
    if victims is None:
        victims = {max(pids, key=pids.get)}
    held = sum(pids.get(pid, 0) for pid in victims)
    t0 = loadgen.now()
    for pid in victims:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:  # a child of a victim that ended on its own
            pass
    out = wait_back(fleets, n, t0, timeout)
    drops = out.pop("drops")
    out.update(killed_worker_clients=held,
               others_dropped=sum(1 for _, pid, _ in drops if pid not in victims),
               clients_per_worker=sorted(stats(fleets)["pids"].values(), reverse=True))
    return out


def hup_storm(fleets: Fleets, target: Target, n: int, timeout: float) -> dict[str, Any]:
    """A rolling restart (``HUP``): every client is closed by its draining worker and
    reconnects to a new one; until all are back."""
    fleets.ask(("mark",), 30)
    old = {p.pid for p in target.serving()}
    t0 = loadgen.now()
    os.kill(target.master_pid, signal.SIGHUP)
    deadline = t0 + timeout
    while loadgen.now() < deadline and old & {p.pid for p in target.serving()}:
        time.sleep(0.5)
    gone = loadgen.now() - t0
    out = wait_back(fleets, n, t0, timeout)
    out.pop("drops")
    out["old_workers_gone_s"] = round(gone, 1)
    return out


def run_target(name: str, args: argparse.Namespace, redis: RedisServer,
               log: Callable[[str], None]) -> dict[str, Any]:
    """Every measurement of one target (not ``ceiling``), the target started fresh."""
    target = make_target(name, args, redis)
    one = name.endswith("-one")
    n = min(args.clients, args.one_process_clients) if one else args.clients
    procs = math.ceil(n / (args.clients / args.procs))
    log(f"{name}: {target.label}, {n:,} clients from {procs} load processes")
    target.start()
    fleets = None
    try:
        time.sleep(1.0)
        base = memory(target)
        fleets = Fleets(fleet_args(target.url, n, args.connect_concurrency), procs)
        stages, connect_s = connect_stages(fleets, target, args, n, base["pss"], log)
        s = stats(fleets)
        connect = sorted(s["connect"])
        result: dict[str, Any] = {
            "target": name, "label": target.label, "clients": n, "held": s["live"],
            "workers": getattr(target, "workers", 1), "connect_seconds": round(connect_s, 1),
            "connect_p99_ms": round(connect[int(0.99 * (len(connect) - 1))] * 1000, 1)
            if connect else None,
            "connect_failures": s["failures"], "serving_processes": len(s["pids"]),
            "master_rss_before_mb": round(base["master_rss"] / 2**20, 1),
            "stages": stages}
        result["hold"] = hold(fleets, target, args.hold)
        after = memory(target)  # again once the connects' churn has settled
        result["hold"]["per_client_kb"] = round(
            (after["pss"] - base["pss"]) / max(1, result["hold"]["live_after"]) / 1024, 2)
        result["master_rss_growth_mb"] = round(
            (_rss(target.master_pid) - base["master_rss"]) / 2**20, 2) if not one else None
        log(f"  held {args.hold:g} s: {result['hold']}")
        live = result["hold"]["live_after"]
        result["broadcasts"] = [broadcast(fleets, 100 + k, live) for k in range(args.broadcasts)]
        log(f"  broadcasts: {result['broadcasts']}")
        if not one:
            result["kill"] = kill_storm(fleets, live, args.storm_timeout)
            log(f"  kill -9 a worker: {result['kill']}")
            live = result["kill"]["live"]
            result["hup"] = hup_storm(fleets, target, live, args.storm_timeout)
            log(f"  HUP: {result['hup']}")
        return result
    finally:
        if fleets is not None:
            fleets.stop()
        if args.server_log and isinstance(target, Cluster):
            Path(args.server_log).with_suffix(f".{name}.log").write_text(target.whole_log())
        target.stop()


def save(results: dict[str, Any], args: argparse.Namespace, started: float) -> None:
    """Write the results so far to ``--json`` (and, with ``--write``, the docs)."""
    results["minutes"] = round((time.time() - started) / 60, 1)
    results["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    if args.json:
        with open(args.json, "w") as f:
            f.write(json.dumps(results, indent=1) + "\n")
    if args.write:
        scale_report.write(ROOT / "docs", results)


def _stop_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # A run takes up to half an hour: SIGTERM, and SIGINT even in a shell's background job
    # (which ignores it), stop it as Ctrl-C does, its clients, servers and Redis by PID.
    signal.signal(signal.SIGTERM, _stop_on_signal)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    loadgen.raise_nofile()
    started = time.time()

    def log(text: str) -> None:
        print(f"[{time.time() - started:6.0f} s] {text}", file=sys.stderr, flush=True)

    load = os.getloadavg()
    words = sys.argv[1:] if argv is None else argv
    results: dict[str, Any] = {"command": " ".join(["python -m bench.scale", *words]),
                               "clients": args.clients, "hold": args.hold,
                               "workers": args.workers, "procs": args.procs,
                               "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                               "load_average_at_start": [round(x, 2) for x in load],
                               "targets": {}}
    redis = RedisServer()
    redis.start()
    try:
        for name in args.targets:
            try:
                if name == "ceiling":
                    results["targets"][name] = ceiling.run(args.ceiling_seconds, log)
                else:
                    results["targets"][name] = run_target(name, args, redis, log)
            except (RuntimeError, OSError) as exc:
                log(f"{name} failed: {exc}")
                results["targets"][name] = {"target": name, "error": str(exc)}
            save(results, args, started)  # after each target: a long run is never all lost
    finally:
        redis.stop()
    print(json.dumps(results, indent=1))
    return 0 if all("error" not in r for r in results["targets"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
