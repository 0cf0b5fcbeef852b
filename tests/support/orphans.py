"""The orphan check: no process a test starts outlives the test.

The pytest process makes itself a child subreaper (the master's own
:func:`cluster.pool.template.become_subreaper`), so a process
that any test starts and that outlives its parent is re-parented here, where
:func:`kill_left_behind` finds it. The fixture that runs the check is in
tests/e2e/conftest.py (a unit test starts no process: tests/unit/conftest.py).
"""
from __future__ import annotations

import os
import time

import psutil

SESSION_PIDS: set[int] = set()
"""Processes that outlive a test on purpose (the session's redis-server)."""


def children() -> set[int]:
    """The PIDs of every process below this one."""
    return {child.pid for child in psutil.Process().children(recursive=True)}


def kill_left_behind(before: set[int], grace: float = 5) -> list[tuple[int, str]]:
    """Kill the processes below this one that were not in ``before`` and are still alive
    after ``grace`` seconds (but :data:`SESSION_PIDS` and theirs), reap the zombies;
    (pid, command line) of each killed."""
    deadline = time.monotonic() + grace
    while True:
        kept = _session_processes()
        left = [child for child in psutil.Process().children(recursive=True)
                if child.pid not in before and child.pid not in kept and _alive(child)]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    killed = [(child.pid, _cmdline(child)) for child in left]
    for child in left:
        child.kill()
    _reap_zombies()
    return killed


def _session_processes() -> set[int]:
    """SESSION_PIDS and their descendants (a broker node starts helpers when it likes)."""
    kept = set(SESSION_PIDS)
    for pid in SESSION_PIDS:
        try:
            kept.update(child.pid for child in psutil.Process(pid).children(recursive=True))
        except psutil.NoSuchProcess:
            pass
    return kept


def _alive(proc: psutil.Process) -> bool:
    try:
        if proc.status() == psutil.STATUS_ZOMBIE:
            _reap_zombies()
            return False
        return True
    except psutil.NoSuchProcess:
        return False


def _cmdline(proc: psutil.Process) -> str:
    try:
        return " ".join(proc.cmdline())
    except psutil.Error:
        return "?"


def _reap_zombies() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
