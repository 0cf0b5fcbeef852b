"""Act on a running master through its ``--pid`` file: ``reload``, ``stop``, ``scale``, ``status``.

Each function sends the master a signal (see docs/operations.md, "Signals and deploys") and
returns one line saying what it did, or raises :class:`~cluster.ops.pidfile.PidFileError`
with one line saying why it could not.
"""
from __future__ import annotations

import os
import signal
import time

from cluster.ops.pidfile import PidFile, PidFileError, StatusFile

SCALE_STEP_TIMEOUT = 10.0
"""Seconds ``scale`` waits for the master to take one TTIN or TTOU."""


def reload(pid_path: str) -> str:
    """Start a rolling restart (SIGHUP)."""
    pid = _signal(pid_path, signal.SIGHUP)
    return f"master {pid}: rolling restart started (sent SIGHUP)"


def stop(pid_path: str, graceful: bool) -> str:
    """Stop the master: drain first (SIGTERM) or at once (SIGINT)."""
    if graceful:
        pid = _signal(pid_path, signal.SIGTERM)
        return f"master {pid}: graceful stop started (sent SIGTERM)"
    pid = _signal(pid_path, signal.SIGINT)
    return f"master {pid}: fast stop started (sent SIGINT)"


def scale(pid_path: str, workers: int) -> str:
    """Bring the master to ``workers`` workers, one TTIN or TTOU at a time.

    Signals of one kind sent back to back would merge into one, so each step waits
    until the status file shows the new size.
    """
    pid, status = _master(pid_path)
    start = size = int(status["size"])
    while size != workers:
        signum = signal.SIGTTIN if workers > size else signal.SIGTTOU
        _send(pid, signum, pid_path)
        deadline = time.monotonic() + SCALE_STEP_TIMEOUT
        while True:
            time.sleep(0.05)
            now = int(_status(pid_path, pid)["size"])
            if now != size:
                size = now
                break
            if time.monotonic() > deadline:
                raise PidFileError(f"master {pid} did not take {signum.name} within "
                                   f"{SCALE_STEP_TIMEOUT:.0f} s (still {size} workers)")
    if start == workers:
        return f"master {pid}: already {workers} workers"
    return f"master {pid}: scaled from {start} to {workers} workers"


def status(pid_path: str) -> str:
    """What the master runs: its workers slot by slot, those booting and draining."""
    pid, state = _master(pid_path)
    lines = [f"master {pid}: {state['size']} workers"
             + (f", {state['stopping']} stop in progress" if state.get("stopping") else "")
             + (", rolling restart in progress" if state.get("rolling") else "")]
    serving = state.get("serving", {})
    for slot in range(int(state["size"])):
        worker = serving.get(str(slot))
        lines.append(f"  slot {slot}: " + (f"worker {worker}" if worker else "no worker yet"))
    for what in ("booting", "draining"):
        if state.get(what):
            lines.append(f"  {what}: " + ", ".join(str(p) for p in state[what]))
    return "\n".join(lines)


def _signal(pid_path: str, signum: int) -> int:
    pid = PidFile(pid_path).read()
    _send(pid, signum, pid_path)
    return pid


def _send(pid: int, signum: int, pid_path: str) -> None:
    """``os.kill``, its failures as one line (:class:`PidFileError`)."""
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        raise PidFileError(f"stale pid file {pid_path}: no process {pid} is running") from None
    except PermissionError:
        raise PidFileError(f"not allowed to signal master {pid} (from {pid_path}): run this as "
                           "the master's user") from None


def _master(pid_path: str) -> tuple[int, dict]:
    pid = PidFile(pid_path).read()
    return pid, _status(pid_path, pid)


def _status(pid_path: str, pid: int) -> dict:
    status = StatusFile(pid_path).read()
    if status.get("master") != pid or "size" not in status:
        raise PidFileError(f"status file {pid_path}.json is not master {pid}'s: "
                           "is the master running with this --pid?")
    return status
