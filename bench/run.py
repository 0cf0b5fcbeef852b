"""The benchmark: one eventlet process against sticky-cluster (and nginx ip_hash, if installed).

    python -m bench.run [--rounds 3] [--quick] [--out docs]

In each round every target is started fresh, measured, and stopped, in an order that
rotates from round to round, so slow drifts of a shared machine spread over all of
them. Per target: websocket echo at 100 and 1,000 clients, a 200-client room broadcast,
memory of idle clients (in the first ``Plan.idle_rounds`` rounds), then, on the target
started anew, handshakes (every handshake leaves a session on the server for 45 s). The
table holds medians over the rounds, ratios against the one eventlet process of the same
run. It is written to ``docs/benchmarks.md`` with a chart, ``docs/benchmarks.png``, and
every round's figures to ``docs/benchmarks.json``; the targets are printed.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import shlex
import signal
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

from . import measure, report
from .targets import (ROOT, Cluster, Gthread, NginxPair, RedisServer, Standalone, Target,
                      Uvicorn, export_version)


@dataclasses.dataclass(frozen=True)
class Plan:
    """How long and how hard to measure."""

    rounds: int
    idle_rounds: int
    seconds: float
    warmup: float
    idle_clients: int
    worker_counts: tuple[int, ...]
    loadgen_procs: int
    timeout: float = 180.0


FULL = Plan(rounds=3, idle_rounds=3, seconds=4.0, warmup=1.0, idle_clients=5000,
            worker_counts=(1, 2, 4), loadgen_procs=2)
QUICK = Plan(rounds=1, idle_rounds=1, seconds=2.0, warmup=0.5, idle_clients=1000,
             worker_counts=(2,), loadgen_procs=2)

Samples = dict[str, list[float]]
RESULTS = "benchmarks.json"
"""What a run measured, every round of it; the report is made from it (``--render``)."""

QUIET = 0.25
"""CPU that processes not ours may take during a measurement, in cores, before it is taken
again (at most ``ATTEMPTS`` times; the quietest attempt is kept)."""
ATTEMPTS = 3
QUIET_WAIT = 90.0
"""Seconds a measurement waits at most for the machine to be quiet before it starts."""
QUIET_BUDGET = 600.0
"""Seconds a whole run may spend waiting and measuring again; then it measures as it is."""


class Meter:
    """Runs the load scenarios on one target, again when others loaded the machine meanwhile.

    :param helpers: pids of our processes that are not the target's (the Redis server).
    """

    spent = 0.0
    """Seconds all meters of this run have spent waiting for quiet or measuring again."""

    def __init__(self, target: Target, plan: Plan, helpers: list[int],
                 log: Callable[[str], None]) -> None:
        self.target = target
        self.plan = plan
        self.helpers = helpers
        self.log = log
        self.foreign: list[float] = []

    def load(self, scenario: str, options: list[str], restart: bool = False) -> dict[str, Any]:
        """The quietest of up to ATTEMPTS runs; ``restart``: a fresh target for each one."""
        best: dict[str, Any] | None = None
        for attempt in range(ATTEMPTS):
            if restart:
                self.target.stop()
                self.target.start()
            patient = Meter.spent < QUIET_BUDGET
            if patient:
                waited = measure.wait_quiet(self.target, self.helpers, QUIET, QUIET_WAIT)
                Meter.spent += waited
                if waited > 2:
                    self.log(f"  (waited {waited:.0f} s for others' processes to calm down)")
            result = measure.load(scenario, self.target, options, self.plan.timeout, self.helpers)
            if best is None or result["foreign_cores"] < best["foreign_cores"]:
                best = result
            if result["foreign_cores"] <= QUIET or not patient:
                break
            Meter.spent += result["run_seconds"]
            self.log(f"  ({scenario}: others used {result['foreign_cores']:.2f} core meanwhile"
                     + ("; again)" if attempt + 1 < ATTEMPTS else ")"))
        assert best is not None
        self.foreign.append(best["foreign_cores"])
        return best


def measure_target(target: Target, plan: Plan, with_idle: bool, helpers: list[int],
                   log: Callable[[str], None]) -> Samples:
    """Every scenario once on ``target``, started fresh, and again fresh for the handshakes.

    The handshakes get a server of their own: the teardown of a thousand idle clients
    would still be running in it, and their sessions would slow what follows them.
    """
    target.start()
    meter = Meter(target, plan, helpers, log)
    window = ["--seconds", str(plan.seconds), "--warmup", str(plan.warmup),
              "--procs", str(plan.loadgen_procs)]
    out: Samples = defaultdict(list)

    def fits(clients: int) -> bool:
        return target.max_websockets is None or clients <= target.max_websockets

    for clients in filter(fits, (100, 1000)):
        echo = meter.load("echo", ["--clients", str(clients), *window])
        _check(echo, "echo", clients, echo.get("connected"))
        key = f"echo{clients}"
        out[f"{key}_rate"].append(echo["msgs_per_s"])
        out[f"{key}_p50"].append(echo["p50_ms"])
        out[f"{key}_p99"].append(echo["p99_ms"])
        out[f"{key}_loadgen"].append(echo["loadgen_cpu_share"])
        out[f"{key}_master"].append(echo["master_cpu_seconds"] / echo["run_seconds"])
        log(f"  echo {clients:>5}: {echo['msgs_per_s']:>8.0f} msg/s  p50 {echo['p50_ms']:.1f} ms"
            f"  p99 {echo['p99_ms']:.1f} ms  loadgen {echo['loadgen_cpu_share']:.2f} core")
    for clients in ([1000] if not fits(1000) else []) + ([200] if not fits(200) else []):
        log(f"  {clients} clients: skipped ({target.max_websockets} websockets at most)")
    if fits(200):
        _broadcast(meter, window, out, log)
    if with_idle:
        _idle(target, plan, out, log)
    _handshakes(target, meter, window, out, log)
    out["foreign"].append(max(meter.foreign))
    return out


def _broadcast(meter: Meter, window: list[str], out: Samples,
               log: Callable[[str], None]) -> None:
    bcast = meter.load("broadcast", ["--clients", "200", "--rate", "20", *window])
    _check(bcast, "broadcast", 200, bcast.get("joined"))
    out["bcast_p50"].append(bcast["p50_ms"])
    out["bcast_p99"].append(bcast["p99_ms"])
    out["bcast_delivery"].append(bcast["delivery_ratio"] or 0.0)
    out["bcast_master"].append(bcast["master_cpu_seconds"] / bcast["run_seconds"])
    log(f"  broadcast 200: p50 {bcast['p50_ms']:.2f} ms  p99 {bcast['p99_ms']:.2f} ms"
        f"  delivered {bcast['delivery_ratio']}")


def _idle(target: Target, plan: Plan, out: Samples, log: Callable[[str], None]) -> None:
    """Memory per idle client, with as many clients as the plan says (as ``target`` can hold)."""
    clients = min(plan.idle_clients, target.max_websockets or plan.idle_clients)
    idle = measure.idle_memory(target, clients, plan.timeout)
    if idle["connected"] < clients:
        raise measure.LoadgenError(f"idle on {target.name}: {idle['connected']} connected")
    out["mem_per_client_kb"].append(idle["per_client_pss"] / 1024)
    out["mem_per_client_rss_kb"].append(idle["per_client_rss"] / 1024)
    out["mem_total_mb"].append(idle["pss_during"] / 2 ** 20)
    out["master_rss_mb"].append(idle["master_rss_during"] / 2 ** 20)
    out["master_rss_growth_kb"].append(idle["master_rss_growth"] / 1024)
    log(f"  idle {idle['connected']}: {idle['per_client_pss'] / 1024:.1f} KB/client (PSS), "
        f"all processes {idle['pss_during'] / 2 ** 20:.0f} MB, master RSS growth "
        f"{idle['master_rss_growth'] / 1024:.0f} KB")


def _handshakes(target: Target, meter: Meter, window: list[str], out: Samples,
                log: Callable[[str], None]) -> None:
    hs = meter.load("handshake", ["--concurrency", "50", "--sources", "200", *window],
                    restart=True)
    _check(hs, "handshake", 1, hs.get("handshakes"))
    out["hs_rate"].append(hs["handshakes_per_s"])
    out["hs_p99"].append(hs["p99_ms"])
    out["hs_loadgen"].append(hs["loadgen_cpu_share"])
    if target.master_pid is not None:
        per_handshake = hs["master_cpu_seconds"] / max(1, hs["attempted"])
        out["hs_master_us"].append(per_handshake * 1e6)
        out["hs_master_share"].append(per_handshake * hs["handshakes_per_s"])
    log(f"  handshakes: {hs['handshakes_per_s']:>8.0f}/s  p99 {hs['p99_ms']:.1f} ms  "
        f"loadgen {hs['loadgen_cpu_share']:.2f} core"
        + (f"  master {out['hs_master_us'][-1]:.0f} µs/handshake" if target.master_pid else ""))
    one = meter.load("handshake", ["--concurrency", "50", "--sources", "1", *window],
                     restart=True)
    _check(one, "handshake", 1, one.get("handshakes"))
    out["hs_one_rate"].append(one["handshakes_per_s"])
    log(f"  handshakes from one source address: {one['handshakes_per_s']:>8.0f}/s")


def _check(result: dict[str, Any], scenario: str, wanted: int, got: Any) -> None:
    if not got or got < wanted or result.get("errors"):
        raise measure.LoadgenError(f"{scenario}: {got} of {wanted} clients, "
                                   f"errors {result.get('error_kinds')}")


def make_targets(plan: Plan, redis: RedisServer,
                 baseline: tuple[str, Path] | None = None) -> list[Target]:
    """Every target of a run; ``baseline``: also the 2-worker relay cluster of that version."""
    targets: list[Target] = [Standalone()]
    targets += [Cluster(n, None) for n in plan.worker_counts]
    targets += [Cluster(n, redis) for n in plan.worker_counts]
    if NginxPair.available():
        targets.append(NginxPair(redis))
    targets.append(Uvicorn())
    targets += [Cluster(n, None, "asyncio") for n in plan.worker_counts]
    targets += [Cluster(n, redis, "asyncio") for n in plan.worker_counts]
    targets.append(Gthread())
    targets += [Cluster(n, None, "threading") for n in plan.worker_counts]
    targets += [Cluster(n, redis, "threading") for n in plan.worker_counts]
    if baseline:
        targets += [Cluster(n, None, baseline=baseline) for n in plan.worker_counts]
    return targets


def pick(targets: list[Target], names: list[str] | None) -> list[Target]:
    """The targets called ``names`` (all when None), the run's baseline process always included.

    :raises ValueError: a name no target has (the message lists the names there are).
    """
    if not names:
        return targets
    known = {t.name for t in targets}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"--targets: no target {', '.join(unknown)}; "
                         f"there are: {', '.join(t.name for t in targets)}")
    return [t for t in targets if t.name in names or t.name == report.BASE]


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run(plan: Plan, out_dir: Path, command: str, baseline: str | None = None,
        names: list[str] | None = None) -> int:
    """Measure every target ``plan.rounds`` times; write the report; 1 if any measurement failed.

    :param baseline: a git ref: also measure that version's cluster (its files exported to a
        temporary directory), for the master's cost per hand-off against this tree's.
    :param names: measure only these targets (and the one eventlet process, the base of ratios).
    """
    for signum in (signal.SIGINT, signal.SIGTERM):  # stop what was started, also in background
        signal.signal(signum, _interrupt)
    started = time.monotonic()
    scratch = tempfile.TemporaryDirectory(prefix="sticky-bench-")
    version = (baseline, export_version(baseline, Path(scratch.name))) if baseline else None
    redis = RedisServer()
    redis.start()
    samples: dict[str, Samples] = {}
    failures: list[str] = []
    try:
        targets = pick(make_targets(plan, redis, version), names)
        for round_index in range(plan.rounds):
            shift = round_index % len(targets)
            for target in targets[shift:] + targets[:shift]:
                print(f"round {round_index + 1}/{plan.rounds}: {target.label}", flush=True)
                try:
                    got = measure_target(target, plan, round_index < plan.idle_rounds,
                                         [redis.proc.pid] if redis.proc else [],
                                         lambda line: print(line, flush=True))
                except (measure.LoadgenError, RuntimeError) as exc:
                    failures.append(f"round {round_index + 1}, {target.name}: {exc}")
                    print(f"  FAILED: {exc}", flush=True)
                    continue
                finally:
                    target.stop()
                for key, values in got.items():
                    samples.setdefault(target.name, defaultdict(list))[key].extend(values)
    finally:
        redis.stop()
        scratch.cleanup()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / RESULTS).write_text(json.dumps({
        "command": command, "minutes": round((time.monotonic() - started) / 60, 1),
        "measured_at": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "plan": dataclasses.asdict(plan), "baseline": baseline,
        "labels": {t.name: t.label for t in targets},
        "samples": samples, "failures": failures}, indent=1))
    render(out_dir)
    return 1 if failures else 0


def render(out_dir: Path) -> None:
    """Write benchmarks.md and benchmarks.png from the results a run left in ``out_dir``."""
    results = json.loads((out_dir / RESULTS).read_text())
    samples = results["samples"]
    medians = {name: {key: statistics.median(values) for key, values in metrics.items()}
               for name, metrics in samples.items()}
    verdicts = report.verdicts(medians, results.get("baseline"))
    plan = Plan(**results["plan"])
    report.write(out_dir, medians, samples, results["labels"], verdicts, results["failures"],
                 plan, results["command"], results["minutes"], results["measured_at"])
    print()
    for verdict in verdicts:
        print(("MET     " if verdict.met else "NOT MET ") + verdict.text)
    print(f"\nwrote {out_dir / 'benchmarks.md'} and {out_dir / 'benchmarks.png'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, help="rounds (default 3; 1 with --quick)")
    parser.add_argument("--quick", action="store_true",
                        help="one short round: 2 workers only, 1,000 idle clients")
    parser.add_argument("--out", type=Path, default=ROOT / "docs",
                        help="where benchmarks.md, .png and .json go (default docs/)")
    parser.add_argument("--render", action="store_true",
                        help="measure nothing: write benchmarks.md and .png again from the "
                             "last run's benchmarks.json")
    parser.add_argument("--baseline", metavar="REF",
                        help="also measure the 2-worker relay cluster of git version REF (a "
                             "commit, branch or tag of this repository) in the same run: the "
                             "master's cost per hand-off of both, and their ratio")
    parser.add_argument("--targets", metavar="NAMES",
                        help="measure only these targets, comma-separated (e.g. "
                             "relay-2,relay-2@REF); the one eventlet process always runs")
    args = parser.parse_args(argv)
    if args.render:
        render(args.out)
        return 0
    plan = QUICK if args.quick else FULL
    if args.rounds is not None:
        if args.rounds < 1:
            parser.error("--rounds must be at least 1")
        plan = dataclasses.replace(plan, rounds=args.rounds)
    command = "python -m bench.run " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    names = [n.strip() for n in args.targets.split(",") if n.strip()] if args.targets else None
    try:
        return run(plan, args.out, command.strip(), args.baseline, names)
    except (RuntimeError, ValueError) as exc:  # a bad --baseline or --targets: one line
        print(f"bench.run: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
