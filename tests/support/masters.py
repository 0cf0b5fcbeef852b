"""sticky-cluster masters run as real processes: started from the checkout, watched
through their log files and their status endpoint, stopped by PID.

The end-to-end tests start them (the ``start_cluster`` fixture of tests/e2e/conftest.py,
:func:`shared_cluster`, or :class:`ClusterProcess` for a command line of their own);
:func:`cli` runs one command of the CLI to its end.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import psutil

from cluster.pool import template
from cluster.setup.proctitle import has_title
from tests.support.paths import ROOT
from tests.support.ports import free_port
from tests.support.waiting import wait_for

RUNTIME_TARGETS = {
    "eventlet": "tests.apps.chat:sio",
    "asgi": "tests.apps.asgi_chat:asgi",
    "fastapi": "tests.apps.fastapi_chat:app",
    "aiohttp": "tests.apps.aiohttp_chat:app",
    "gevent": "tests.apps.gevent_chat:sio",
    "threading": "tests.apps.threading_chat:app",
}
"""One chat app per worker runtime and target shape: ASGIApp with other_asgi_app,
FastAPI with an ASGIApp mounted, aiohttp with an AsyncServer attached, gevent Server,
Flask-SocketIO in threading mode."""


def cli(*args: str, timeout: float = 60, env: dict[str, str] | None = None,
        input: str | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m cluster ARGS`` from the checkout; its exit code, stdout and stderr."""
    return subprocess.run([sys.executable, "-m", "cluster", *args], cwd=ROOT, input=input,
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **env} if env else None)


def is_template(process: psutil.Process) -> bool:
    """Whether ``process`` is a master's workers' template (by its title: the tests install
    setproctitle)."""
    try:
        return has_title(process.cmdline(), template.TITLE)
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False


def worker_pids(master: int) -> set[int]:
    """The workers of the master ``master``: its children but the workers' template."""
    try:
        return {child.pid for child in psutil.Process(master).children()
                if not is_template(child)}
    except psutil.NoSuchProcess:
        return set()


def gone(pid: int) -> bool:
    """True when ``pid`` has exited (a zombie waiting to be reaped counts as gone)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


class ClusterProcess:
    """A ``sticky-cluster run`` master started as a subprocess, logging to a file."""

    def __init__(self, args: list[str], log_path: Path, env: dict[str, str] | None = None,
                 cwd: Path = ROOT, command: list[str] | None = None,
                 python: str = sys.executable) -> None:
        self.args = args
        self.log_path = log_path
        self._log = open(log_path, "wb")
        full_env = {**os.environ, **(env or {})}
        command = command or [python, "-m", "cluster"]
        self.proc = subprocess.Popen([*command, *args], cwd=cwd,
                                     stdout=self._log, stderr=subprocess.STDOUT, env=full_env)
        self.pid = self.proc.pid

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_log(self, text: str, timeout: float = 60, count: int = 1) -> None:
        """Wait for ``text`` to be ``count`` times in the log; fail with the log's last
        lines if it is not within ``timeout`` or the master exits first."""
        try:
            wait_for(lambda: self.log.count(text) >= count or self._dead(), timeout,
                     what=f"{text!r} in the master's log")
        except AssertionError as timed_out:
            raise AssertionError(f"{timed_out}; the log ends:\n{self.log_tail()}") from None
        if self.log.count(text) < count:
            raise AssertionError(f"master exited ({self.proc.returncode}) before {text!r}:\n{self.log}")

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the master's log (its workers' lines included)."""
        return "\n".join(self.log.splitlines()[-lines:])

    async def until_log(self, text: str, timeout: float = 60, count: int = 1) -> None:
        """:meth:`wait_log` without blocking the event loop (the clients keep going)."""
        deadline = time.monotonic() + timeout
        while self.log.count(text) < count:
            assert self.proc.poll() is None, f"master exited before {text!r}:\n{self.log}"
            assert time.monotonic() < deadline, f"no {text!r} in the log after {timeout} s"
            await asyncio.sleep(0.05)

    def slot_of(self, pid: int) -> int:
        """The slot the master's log gives worker ``pid``."""
        match = re.search(rf"worker {pid} \(slot (\d+)\)", self.log)
        assert match, f"worker {pid} not in the log"
        return int(match[1])

    def _dead(self) -> bool:
        return self.proc.poll() is not None

    def worker_pids(self) -> set[int]:
        """The master's workers (its children but the workers' template)."""
        return worker_pids(self.pid)

    def template_pid(self) -> int | None:
        """The workers' template (:mod:`cluster.pool.template`), if the master has one now."""
        try:
            return next((child.pid for child in psutil.Process(self.pid).children()
                         if is_template(child)), None)
        except psutil.NoSuchProcess:
            return None

    def status(self) -> dict:
        """The master's status (``/status`` of its ``--status-bind``: :func:`shared_cluster`)."""
        with urllib.request.urlopen(f"{self.status_url}/status", timeout=10) as answer:
            return json.load(answer)

    def idle(self) -> bool:
        """No worker holds a session, as of their heartbeats (until then the master places
        new clients by the old load, not evenly)."""
        return all(worker["sessions"] == 0 for worker in self.status()["workers"])

    def signal(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def wait(self, timeout: float = 30) -> int:
        return self.proc.wait(timeout)

    def stop(self) -> None:
        """The fast stop (SIGINT: TERM drains for up to --graceful-timeout)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()


def launch_cluster(log_path: Path, target: str = "tests.apps.chat:sio", *,
                   workers: int | None = 4, args: tuple = (), port: int | None = None,
                   env: dict | None = None, python: str = sys.executable) -> ClusterProcess:
    """Start ``sticky-cluster run TARGET`` on 127.0.0.1:``port`` (default: a free one),
    logging to ``log_path``; its :attr:`port` and :attr:`url` are set. The caller stops it."""
    port = port or free_port()
    argv = ["run", target, "--bind", f"127.0.0.1:{port}", *args]
    if workers is not None:
        argv += ["--workers", str(workers)]
    cluster = ClusterProcess(argv, log_path, env=env, python=python)
    cluster.port = port
    cluster.url = f"http://127.0.0.1:{port}"
    return cluster


@contextlib.contextmanager
def shared_cluster(log_path: Path, target: str, **kwargs) -> Iterator[ClusterProcess]:
    """A ready cluster for several tests that only connect clients to it (the body of a
    module-scoped fixture): :func:`launch_cluster`'s arguments, plus a status endpoint
    (:meth:`ClusterProcess.status`). Stopped by PID when the block ends; its workers must
    be gone by then. Tests that share it run in one pytest process only when they are in
    one ``xdist_group``; each should wait for :meth:`ClusterProcess.idle` first."""
    status_port = free_port()
    args = ("--status-bind", f"127.0.0.1:{status_port}", *kwargs.pop("args", ()))
    cluster = launch_cluster(log_path, target, args=args, **kwargs)
    cluster.status_url = f"http://127.0.0.1:{status_port}"
    workers: set[int] = set()
    try:
        cluster.wait_log("cluster ready", timeout=60)
        workers = cluster.worker_pids()
        yield cluster
    finally:
        cluster.stop()
    wait_for(lambda: all(gone(pid) for pid in workers), 10, what="the shared cluster's workers to exit")
