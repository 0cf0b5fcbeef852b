"""One measurement of one target: run ``bench.loadgen`` against it, sample CPU and memory.

Every load generator run is a subprocess in its own session, bounded in time; on a
timeout its whole process group (its ``--procs`` children) is killed by that group's id.
The machine is shared: each run also says how much CPU processes not ours took meanwhile.
"""
from __future__ import annotations

import json
import os
import resource
import select
import signal
import subprocess
import sys
import time
from typing import Any

import psutil

from .targets import ROOT, Target


class LoadgenError(RuntimeError):
    """The load generator failed or printed no result."""


def _loadgen_argv(scenario: str, target: Target, options: list[str]) -> list[str]:
    return [sys.executable, "-m", "bench.loadgen", scenario, "--url", target.url, *options]


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _last_json(text: str) -> dict[str, Any]:
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise LoadgenError("the load generator printed no result")


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of one process so far (0 when there is none)."""
    if pid is None:
        return 0.0
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return times.user + times.system


def _machine_busy() -> float:
    """CPU seconds all processes of the machine spent so far (user, nice, system)."""
    times = psutil.cpu_times()
    return times.user + times.nice + times.system


def _ours(target: Target, extra_pids: list[int]) -> float:
    """CPU seconds so far of the target's processes, ``extra_pids``, this process, and the
    children this process has reaped (the load generators that have finished)."""
    total = sum(cpu_seconds(p.pid) for p in target.processes()) + cpu_seconds(os.getpid())
    total += sum(cpu_seconds(pid) for pid in extra_pids)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return total + children.ru_utime + children.ru_stime


def wait_quiet(target: Target, extra_pids: list[int], quiet: float, timeout: float) -> float:
    """Wait until processes not ours use at most ``quiet`` cores (over half a second), or
    ``timeout``.

    Returns the seconds waited.
    """
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        machine, ours = _machine_busy(), _ours(target, extra_pids)
        time.sleep(0.5)
        if (_machine_busy() - machine) - (_ours(target, extra_pids) - ours) <= quiet * 0.5:
            break
    return time.monotonic() - started


def load(scenario: str, target: Target, options: list[str], timeout: float,
         extra_pids: list[int] = ()) -> dict[str, Any]:
    """Run one load scenario; return its result, with the master's CPU seconds over the run
    and ``foreign_cores``: the CPU that processes of others used meanwhile, in cores."""
    master_before = cpu_seconds(target.master_pid)
    machine_before, ours_before = _machine_busy(), _ours(target, list(extra_pids))
    started = time.monotonic()
    proc = subprocess.Popen(_loadgen_argv(scenario, target, options), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        raise LoadgenError(f"{scenario} on {target.name}: no result in {timeout:.0f} s") from None
    except BaseException:
        _kill_group(proc)
        raise
    if proc.returncode != 0:
        raise LoadgenError(f"{scenario} on {target.name} failed ({proc.returncode}): "
                           f"{err.strip()[-500:]}")
    result = _last_json(out)
    result["master_cpu_seconds"] = cpu_seconds(target.master_pid) - master_before
    result["run_seconds"] = time.monotonic() - started
    foreign = (_machine_busy() - machine_before) - (_ours(target, list(extra_pids)) - ours_before)
    result["foreign_cores"] = max(0.0, foreign) / result["run_seconds"]
    return result


def memory(target: Target) -> dict[str, float]:
    """Sum of PSS and of RSS (bytes) over the target's processes, and the master's RSS."""
    pss = rss = 0.0
    for proc in target.processes():
        try:
            info = proc.memory_full_info()
        except psutil.Error:
            continue
        pss += info.pss
        rss += info.rss
    master_rss = 0.0
    if target.master_pid is not None:
        try:
            master_rss = psutil.Process(target.master_pid).memory_info().rss
        except psutil.Error:
            pass
    return {"pss": pss, "rss": rss, "master_rss": master_rss}


def idle_memory(target: Target, clients: int, timeout: float) -> dict[str, Any]:
    """Memory of the target before and while holding ``clients`` idle websocket clients."""
    settle = 1.0
    time.sleep(settle)
    before = memory(target)
    proc = subprocess.Popen(_loadgen_argv("idle", target, ["--clients", str(clients),
                                                           "--hold", str(timeout)]),
                            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    assert proc.stdout is not None and proc.stdin is not None
    try:
        ready, _, _ = select.select([proc.stdout], [], [], timeout)
        line = proc.stdout.readline() if ready else ""
        if not line:
            raise LoadgenError(f"idle on {target.name}: the clients did not connect in time")
        connected = json.loads(line)
        time.sleep(settle)
        during = memory(target)
        out, _ = proc.communicate(timeout=60)  # stdin closes: the clients go, a last line comes
        done = _last_json(out)
    except BaseException:
        _kill_group(proc)
        raise
    n = max(1, connected["connected"])
    return {
        "clients": clients, "connected": connected["connected"],
        "still_open": done.get("still_open"),
        "pss_before": before["pss"], "pss_during": during["pss"],
        "rss_before": before["rss"], "rss_during": during["rss"],
        "per_client_pss": (during["pss"] - before["pss"]) / n,
        "per_client_rss": (during["rss"] - before["rss"]) / n,
        "master_rss_before": before["master_rss"], "master_rss_during": during["master_rss"],
        "master_rss_growth": during["master_rss"] - before["master_rss"],
    }
