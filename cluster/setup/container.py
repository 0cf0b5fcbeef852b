"""What a container or a platform tells the master: ``PORT``, ``WEB_CONCURRENCY``, the CPUs.

As gunicorn does: ``WEB_CONCURRENCY`` is the default number of workers and ``PORT`` the
default bind (``0.0.0.0:$PORT``); ``--workers``/``--bind`` and their ``STICKY_CLUSTER_*``
variables win over both. Without either, the default worker count is the number of CPUs
this process may use: its CPU affinity (``taskset``, a cpuset), capped by its cgroup's
CPU quota (cgroup v2 ``cpu.max``, v1 ``cpu.cfs_quota_us``; ``docker --cpus``, a
Kubernetes CPU limit), rounded up. ``os.cpu_count()`` counts the machine's CPUs and
would start 64 workers in a container allowed 2.

Hand-written: the standard library reads the affinity only (``os.sched_getaffinity``),
and the libraries that read cgroup quotas come with a process pool (loky) we do not
need; the files are a few lines of text.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Callable, Mapping

V2_MOUNTS = ("sys/fs/cgroup", "sys/fs/cgroup/unified")
"""Where the cgroup v2 hierarchy is mounted: alone, or beside v1 (hybrid)."""
V1_CPU_MOUNTS = ("sys/fs/cgroup/cpu,cpuacct", "sys/fs/cgroup/cpu", "sys/fs/cgroup/cpuacct,cpu")
"""Where the cgroup v1 ``cpu`` controller is mounted, by the usual names."""


def usable_cpus(root: str | Path = "/", affinity: int | None = None) -> int:
    """The CPUs this process may use: its affinity capped by its cgroup's CPU quota.

    :param root: the file system root to read ``proc`` and ``sys`` under (tests give theirs).
    :param affinity: the CPUs of the affinity mask (default: this process's).
    """
    if affinity is None:
        affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
            os.cpu_count() or 1)
    quota = cgroup_cpu_limit(Path(root))
    return max(1, min(affinity, math.ceil(quota)) if quota is not None else affinity)


def cgroup_cpu_limit(root: Path) -> float | None:
    """The CPU quota of this process's cgroup and of its parents, in CPUs (1.5: one and a
    half); None when there is none (or nothing can be read)."""
    try:
        memberships = (root / "proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    limits = []
    for line in memberships:
        _hierarchy, controllers, path = line.split(":", 2)
        if controllers == "":
            limits += _walk(root, V2_MOUNTS, "cgroup.controllers", path, _v2_quota)
        elif "cpu" in controllers.split(","):
            limits += _walk(root, V1_CPU_MOUNTS, "cpu.cfs_period_us", path, _v1_quota)
    return min(limits, default=None)


def _walk(root: Path, mounts: tuple[str, ...], marker: str, path: str,
          quota: Callable[[Path], float | None]) -> list[float]:
    """The quotas found in ``path`` and each of its parents, under the first of ``mounts``
    that holds the hierarchy (its top has ``marker``; inside a container's cgroup
    namespace the path is ``/``)."""
    for mount in mounts:
        base = root / mount
        if not (base / marker).exists():
            continue
        found = []
        parts = [part for part in path.split("/") if part]
        for depth in range(len(parts), -1, -1):
            limit = quota(base.joinpath(*parts[:depth]))
            if limit is not None:
                found.append(limit)
        return found
    return []


def _v2_quota(directory: Path) -> float | None:
    """``cpu.max``: ``QUOTA PERIOD`` in µs, or ``max PERIOD`` (no limit)."""
    try:
        quota, period = (directory / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        return None


def _v1_quota(directory: Path) -> float | None:
    """``cpu.cfs_quota_us`` (-1: no limit) over ``cpu.cfs_period_us``."""
    try:
        quota = int((directory / "cpu.cfs_quota_us").read_text())
        period = int((directory / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None


def default_workers(environ: Mapping[str, str]) -> int:
    """``WEB_CONCURRENCY`` when set, else :func:`usable_cpus`; ValueError (one line) when
    ``WEB_CONCURRENCY`` is not a positive number."""
    text = environ.get("WEB_CONCURRENCY", "").strip()
    if not text:
        return usable_cpus()
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"bad WEB_CONCURRENCY {text!r}: expected a number of workers, 1 or more")
    return int(text)


def default_bind(environ: Mapping[str, str]) -> str | None:
    """``0.0.0.0:$PORT`` when ``PORT`` is set, else None; ValueError (one line) when
    ``PORT`` is not a port number."""
    text = environ.get("PORT", "").strip()
    if not text:
        return None
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"bad PORT {text!r}: expected a TCP port number, 1 to 65535")
    return f"0.0.0.0:{int(text)}"
