"""Fixtures: a private redis-server, clusters run as real processes, and no orphans.

The pytest process makes itself a child subreaper, so a process that any test starts
and that outlives its parent is re-parented here, where the orphan check finds it.
"""
from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parent.parent
PR_SET_CHILD_SUBREAPER = 36
SESSION_PIDS: set[int] = set()
"""Processes that outlive a test on purpose (the session's redis-server)."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_for(predicate, timeout: float, interval: float = 0.05, what: str = "condition"):
    """Poll ``predicate`` until it returns a true value; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


class RedisServer:
    """A private redis-server on a loopback port, stopped and started by PID."""

    def __init__(self, port: int, workdir: Path) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self._workdir = workdir
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self._workdir), "--logfile", ""],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        SESSION_PIDS.add(self.proc.pid)
        wait_for(self._answers, 10, what="redis-server to answer")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            SESSION_PIDS.discard(self.proc.pid)
            self.proc = None

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False


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

    def wait_log(self, text: str, timeout: float = 20, count: int = 1) -> None:
        wait_for(lambda: self.log.count(text) >= count or self._dead(), timeout,
                 what=f"{text!r} in the master's log")
        if self.log.count(text) < count:
            raise AssertionError(f"master exited ({self.proc.returncode}) before {text!r}:\n{self.log}")

    def _dead(self) -> bool:
        return self.proc.poll() is not None

    def worker_pids(self) -> set[int]:
        try:
            return {child.pid for child in psutil.Process(self.pid).children()}
        except psutil.NoSuchProcess:
            return set()

    def signal(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def wait(self, timeout: float = 30) -> int:
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()


@pytest.fixture(scope="session", autouse=True)
def _subreaper():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    yield


@pytest.fixture(autouse=True)
def no_orphans():
    """Fail a test that leaves any process of its own behind (and kill what it left)."""
    before = {child.pid for child in psutil.Process().children(recursive=True)}
    yield
    deadline = time.monotonic() + 5
    while True:
        kept = _session_processes()
        left = [child for child in psutil.Process().children(recursive=True)
                if child.pid not in before and child.pid not in kept and _alive(child)]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    for child in left:
        child.kill()
    _reap_zombies()
    assert not left, f"processes left behind: {[(c.pid, _cmdline(c)) for c in left]}"


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


RUNTIME_TARGETS = {
    "eventlet": "tests.apps.chat:sio",
    "asgi": "tests.apps.asgi_chat:asgi",
    "fastapi": "tests.apps.fastapi_chat:app",
    "aiohttp": "tests.apps.aiohttp_chat:app",
    "gevent": "tests.apps.gevent_chat:sio",
}
"""One chat app per worker runtime and target shape: ASGIApp with other_asgi_app,
FastAPI with an ASGIApp mounted, aiohttp with an AsyncServer attached, gevent Server."""


@pytest.fixture(params=list(RUNTIME_TARGETS))
def app_target(request) -> str:
    """The core end-to-end scenarios run once per entry of :data:`RUNTIME_TARGETS`."""
    return RUNTIME_TARGETS[request.param]


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """A private redis-server for the whole session (restartable by fault tests)."""
    server = RedisServer(free_port(), tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def start_cluster(tmp_path):
    """Start ``sticky-cluster run`` masters; each is stopped by PID when the test ends."""
    started: list[ClusterProcess] = []

    def start(target: str = "tests.apps.chat:sio", *, workers: int | None = 4, args: tuple = (),
              wait: bool = True, port: int | None = None, env: dict | None = None,
              python: str = sys.executable) -> ClusterProcess:
        port = port or free_port()
        argv = ["run", target, "--bind", f"127.0.0.1:{port}", *args]
        if workers is not None:
            argv += ["--workers", str(workers)]
        cluster = ClusterProcess(argv, tmp_path / f"master-{len(started)}.log", env=env,
                                 python=python)
        cluster.port = port
        cluster.url = f"http://127.0.0.1:{port}"
        started.append(cluster)
        if wait:
            cluster.wait_log("cluster ready", timeout=60)  # workers import the app: slow when busy
        return cluster

    yield start
    for cluster in started:
        cluster.stop()
