"""Fixtures: a private redis-server, clusters run as real processes, and no orphans.

The pytest process makes itself a child subreaper, so a process that any test starts
and that outlives its parent is re-parented here, where the orphan check finds it.

The suite runs in parallel (pytest-xdist, ``make test``): every pytest process has its
own session redis-server, its own orphan check and its own block of ports below the
kernel's ephemeral range, so neither another process nor a client's outgoing connection
takes a port a test was given. A test that starts real processes (a cluster, a broker,
the CLI) is marked ``e2e``: by the fixtures it uses (:data:`E2E_FIXTURES`), by its module
(``pytestmark``) or by itself; ``pytest -m "not e2e"`` runs the fast unit part alone.
"""
from __future__ import annotations

import asyncio
import contextlib
import ctypes
import itertools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Callable, Iterator

import hypothesis
import psutil
import pytest
import redis

ROOT = Path(__file__).resolve().parent.parent
PR_SET_CHILD_SUBREAPER = 36
SESSION_PIDS: set[int] = set()
"""Processes that outlive a test on purpose (the session's redis-server)."""


PORT_BLOCK = 2000
"""Ports each pytest process hands out, in turn, from its own block."""
FIRST_PORT = 12000
"""The first block's first port: the blocks end below the ephemeral range (32768)."""


def _port_block() -> itertools.cycle:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")  # gw0, gw1 … under xdist
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    first = FIRST_PORT + (index % 10) * PORT_BLOCK
    return itertools.cycle(range(first, first + PORT_BLOCK))


_PORTS = _port_block()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now, from this pytest process's own block."""
    for port in itertools.islice(_PORTS, PORT_BLOCK):
        with socket.socket() as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue  # in use (a cluster of an earlier test still draining, TIME_WAIT)
            return port
    raise RuntimeError(f"no free port in this process's block of {PORT_BLOCK}")


def cli(*args: str, timeout: float = 60, env: dict[str, str] | None = None,
        input: str | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m cluster ARGS`` from the checkout; its exit code, stdout and stderr."""
    return subprocess.run([sys.executable, "-m", "cluster", *args], cwd=ROOT, input=input,
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **env} if env else None)


def gone(pid: int) -> bool:
    """True when ``pid`` has exited (a zombie waiting to be reaped counts as gone)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


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


class RedisNode:
    """A private ``redis-server`` (or ``redis-server --sentinel``) with arguments of the test's.

    :param args: the arguments after the binary (they name ``port``).
    :param port: the node's port (default: a free one; then ``args`` must not need it).
    :param client: makes a client of the node, for the ready check (default: plain, no
                   password; give one for TLS or AUTH).
    """

    def __init__(self, workdir: Path, args: list[str], port: int | None = None,
                 client: Callable[[], redis.Redis] | None = None) -> None:
        self.port = port or free_port()
        self.workdir = workdir
        self.args = args
        self._client = client or (lambda: redis.Redis(host="127.0.0.1", port=self.port,
                                                      socket_timeout=1))
        self.proc: subprocess.Popen | None = None

    def start(self) -> "RedisNode":
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(["redis-server", *self.args], cwd=self.workdir,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for(self._answers, 20, what=f"redis-server {self.args[:2]} to answer")
        except AssertionError:
            self.stop()
            raise
        return self

    def kill(self) -> None:
        """SIGKILL: the node dies as in a crash, without closing anything cleanly."""
        if self.proc is not None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None

    @property
    def url(self) -> str:
        """The plain ``redis://`` URL of the node's database 0."""
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return self._client()

    def _answers(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"redis-server {self.args} exited {self.proc.returncode}")
        try:
            with contextlib.closing(self.client()) as client:
                return bool(client.ping())
        except redis.RedisError:
            return False


def plain_args(port: int, *extra: str) -> list[str]:
    """A throw-away Redis on 127.0.0.1:``port``: nothing saved."""
    return ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--logfile", "", *extra]


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
        wait_for(lambda: self.log.count(text) >= count or self._dead(), timeout,
                 what=f"{text!r} in the master's log")
        if self.log.count(text) < count:
            raise AssertionError(f"master exited ({self.proc.returncode}) before {text!r}:\n{self.log}")

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
        try:
            return {child.pid for child in psutil.Process(self.pid).children()}
        except psutil.NoSuchProcess:
            return set()

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


hypothesis.settings.register_profile("busy", deadline=None)
hypothesis.settings.load_profile("busy")
"""No per-example deadline: on a busy machine a slow example is not a failure."""

E2E_FIXTURES = frozenset({"start_cluster", "redis_server"})
"""A test that uses one of these starts real processes: it is marked ``e2e``."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests that use :data:`E2E_FIXTURES`; run the ``long`` tests first, then the
    other end-to-end tests, so that in parallel runs no long test starts near the end and
    the short unit tests fill the gaps there. (``--dist loadgroup`` hands out an
    ``xdist_group`` before single tests: keep a group's tests few and short.)"""
    for item in items:
        if E2E_FIXTURES.intersection(item.fixturenames):
            item.add_marker(pytest.mark.e2e)
    items.sort(key=lambda item: (item.get_closest_marker("long") is None,
                                 item.get_closest_marker("e2e") is None))


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
    "threading": "tests.apps.threading_chat:app",
}
"""One chat app per worker runtime and target shape: ASGIApp with other_asgi_app,
FastAPI with an ASGIApp mounted, aiohttp with an AsyncServer attached, gevent Server,
Flask-SocketIO in threading mode."""


@pytest.fixture(params=list(RUNTIME_TARGETS))
def app_target(request) -> str:
    """The core end-to-end scenarios run once per entry of :data:`RUNTIME_TARGETS`."""
    return RUNTIME_TARGETS[request.param]


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory) -> RedisNode:
    """A private redis-server for the whole session (of this pytest process)."""
    port = free_port()
    server = RedisNode(tmp_path_factory.mktemp("redis"), plain_args(port), port).start()
    SESSION_PIDS.add(server.proc.pid)
    yield server
    SESSION_PIDS.discard(server.proc.pid)
    server.stop()


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


@pytest.fixture
def start_cluster(tmp_path):
    """Start ``sticky-cluster run`` masters (:func:`launch_cluster`'s arguments, and
    ``wait`` for "cluster ready"); each is stopped by PID when the test ends."""
    started: list[ClusterProcess] = []

    def start(target: str = "tests.apps.chat:sio", *, wait: bool = True,
              **kwargs) -> ClusterProcess:
        cluster = launch_cluster(tmp_path / f"master-{len(started)}.log", target, **kwargs)
        started.append(cluster)
        if wait:
            cluster.wait_log("cluster ready", timeout=60)  # workers import the app: slow when busy
        return cluster

    yield start
    for cluster in started:
        cluster.stop()
