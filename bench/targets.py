"""The systems under test, each started as real processes on loopback and stopped by PID.

* :class:`Standalone` -- ``bench.standalone``: ``bench.app`` in one eventlet process.
* :class:`Cluster` -- ``python -m cluster run bench.app:sio`` with N workers, on the
  embedded relay or on Redis.
* :class:`Uvicorn` -- ``bench.asgi_app:app`` (the same app on an ``AsyncServer``) in one
  uvicorn process: the baseline of the asyncio worker rows.
* :class:`Cluster` with ``runtime="asyncio"`` -- the cluster's asyncio workers serving
  ``bench.asgi_app:app``.
* :class:`Gthread` -- ``bench.threading_app:app`` in one ``gunicorn -k gthread -w 1
  --threads 100`` process: the baseline of the threading worker rows.
* :class:`Cluster` with ``runtime="threading"`` -- the cluster's threading workers serving
  ``bench.threading_app:app``; ``runtime="gevent"``: its gevent workers serving
  ``bench.gevent_app:app`` (``bench.scale`` only).
* :class:`GeventGunicorn` -- ``bench.gevent_app:app`` in one ``gunicorn -k gevent -w 1``
  process, as python-socketio documents gevent's deployment: the baseline of the gevent
  cluster's memory (``bench.scale`` only).
* :class:`Cluster` with ``baseline=(ref, dir)`` -- the same, from another git version
  of this repository (``bench.run --baseline REF``): the master's cost per hand-off of
  two versions, measured in one run.
* :class:`NginxPair` -- nginx ``ip_hash`` in front of two standalone processes joined by
  python-socketio's ``RedisManager`` (the set-up sticky-cluster replaces).
* :class:`RedisServer` -- a private ``redis-server`` for the Redis targets.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import psutil

from cluster.pool import template
from cluster.setup.proctitle import has_title

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def export_version(ref: str, into: Path) -> Path:
    """The files of git version ``ref`` of this repository, written under ``into``, with
    its C extension built in place where it has one (else a baseline with the master's C
    hand-off loop would run its Python fallback, and its cost per hand-off compare nothing).

    :raises RuntimeError: ``ref`` is not a version git knows here (one line, git's own words).
    """
    done = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", ref],
                          capture_output=True)
    if done.returncode != 0:
        raise RuntimeError(f"--baseline {ref}: {done.stderr.decode(errors='replace').strip()}")
    target = into / "baseline"
    with tarfile.open(fileobj=io.BytesIO(done.stdout)) as archive:
        archive.extractall(target, filter="data")
    if (target / "setup.py").is_file():  # optional, as the install: no compiler, no C loop
        subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=target,
                       capture_output=True)
    return target


def wait_port(port: int, timeout: float = START_TIMEOUT) -> None:
    """Wait until something accepts on 127.0.0.1:``port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f} s")


def stop_process(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    """Stop one process we started, by its PID: ``sig``, then SIGKILL after a grace time."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(STOP_TIMEOUT)


class Target:
    """A system under test: ``url`` to load, ``processes()`` to measure."""

    name = ""
    label = ""
    url = ""
    max_websockets: int | None = None
    """The most websockets it can hold at once, when it is known to be small (the
    scenarios that need more are skipped on it); None: no such bound."""
    master_pid: int | None = None
    """The sticky-cluster master, when there is one (its CPU and RSS are shown alone)."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def pids(self) -> list[int]:
        """Every process that serves clients (not Redis, not the load generator)."""
        raise NotImplementedError

    def processes(self) -> list[psutil.Process]:
        """``pids()`` and all their descendants."""
        found: dict[int, psutil.Process] = {}
        for pid in self.pids():
            try:
                proc = psutil.Process(pid)
                found[pid] = proc
                for child in proc.children(recursive=True):
                    found[child.pid] = child
            except psutil.Error:
                continue
        return list(found.values())

    def serving(self) -> list[psutil.Process]:
        """The processes that hold clients: :meth:`processes` but the master and a
        sticky-cluster workers' template (which serves none; told by its title)."""
        return [proc for proc in self.processes()
                if proc.pid != self.master_pid and not _is_template(proc)]


def _is_template(proc: psutil.Process) -> bool:
    try:
        return has_title(proc.cmdline(), template.TITLE)
    except psutil.Error:
        return False


class RedisServer:
    """A private redis-server on a free loopback port, with nothing saved to disk."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._dir = tempfile.mkdtemp(prefix="bench-redis-")
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self._dir, "--logfile", ""],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None
        shutil.rmtree(self._dir, ignore_errors=True)


class OneProcess(Target):
    """A target that is one process we start (its children, if any, are its own)."""

    proc: subprocess.Popen | None = None

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None

    def pids(self) -> list[int]:
        return [self.proc.pid] if self.proc else []


def _start_standalone(env: dict[str, str] | None = None,
                      options: list[str] = ()) -> tuple[subprocess.Popen, int]:
    """Start ``bench.standalone`` on a free port (with ``options``); return (process, port)."""
    proc = subprocess.Popen([sys.executable, "-m", "bench.standalone", "--bind", "127.0.0.1:0",
                             *options],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, env={**os.environ, **(env or {})})
    assert proc.stdout is not None
    line = proc.stdout.readline()  # the standalone prints its "ready" line once it listens
    if not line:
        stop_process(proc)
        raise RuntimeError("bench.standalone did not start")
    port = int(json.loads(line)["bind"].rpartition(":")[2])
    return proc, port


class Standalone(OneProcess):
    """One eventlet process: the baseline every ratio is taken against."""

    name = "standalone"
    label = "1 eventlet process"

    def __init__(self, connections: int | None = None) -> None:
        self.options = ["--connections", str(connections)] if connections else []
        """``connections``: its green pool (bench.standalone's default when None)."""

    def start(self) -> None:
        self.proc, port = _start_standalone(options=self.options)
        self.url = f"http://127.0.0.1:{port}"


class Uvicorn(OneProcess):
    """One uvicorn process serving ``bench.asgi_app:app``: the asyncio baseline."""

    name = "uvicorn"
    label = "1 uvicorn process (ASGI)"

    def start(self) -> None:
        port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "bench.asgi_app:app", "--host", "127.0.0.1",
             "--port", str(port), "--log-level", "warning", "--no-access-log",
             "--backlog", "4096"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{port}"
        wait_port(port)


class Gthread(OneProcess):
    """One ``gunicorn -k gthread -w 1 --threads 100`` process serving ``bench.threading_app:app``:
    the threading baseline, as python-socketio and Flask-SocketIO document it."""

    name = "gthread"
    label = "1 gunicorn gthread process, 100 threads"
    max_websockets = 100
    """Each websocket holds one of its 100 threads for its whole life."""

    def start(self) -> None:
        port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-k", "gthread", "-w", "1", "--threads", "100",
             "--bind", f"127.0.0.1:{port}", "--backlog", "4096", "--log-level", "warning",
             "bench.threading_app:app"], cwd=ROOT, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{port}"
        wait_port(port)


class GeventGunicorn(OneProcess):
    """One ``gunicorn -k gevent -w 1`` process serving ``bench.gevent_app:app`` (its websockets
    by simple-websocket), taking as many connections as its file descriptors allow."""

    name = "gevent-gunicorn"
    label = "1 gunicorn gevent process"

    def __init__(self, connections: int) -> None:
        self.connections = connections

    def start(self) -> None:
        port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-k", "gevent", "-w", "1",
             "--worker-connections", str(self.connections), "--bind", f"127.0.0.1:{port}",
             "--backlog", "4096", "--log-level", "warning", "bench.gevent_app:app"],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{port}"
        wait_port(port)


CLUSTER_APPS = {"eventlet": "bench.app:sio", "asyncio": "bench.asgi_app:app",
                "gevent": "bench.gevent_app:app", "threading": "bench.threading_app:app"}
"""The app each worker runtime of the cluster serves."""


class Cluster(OneProcess):
    """``python -m cluster run bench.app:sio`` (or ``bench.asgi_app:app``) with ``workers`` workers.

    :param workers: the number of worker processes.
    :param redis: the Redis to join the workers with; None for the embedded relay.
    :param runtime: ``eventlet``, ``asyncio``, ``gevent`` or ``threading``: which app of
        :data:`CLUSTER_APPS` is served.
    :param baseline: another version to run instead of this tree: ``(git ref, directory holding
        that version's files)``; the same interpreter and packages run it.
    :param options: more options of ``sticky-cluster run``.
    :param module: the module run with ``python -m`` (the bench's own master of
        :mod:`bench.closer` instead of the CLI's).
    """

    def __init__(self, workers: int, redis: RedisServer | None, runtime: str = "eventlet",
                 baseline: tuple[str, Path] | None = None, options: list[str] = (),
                 module: str = "cluster", env: dict[str, str] | None = None) -> None:
        self.workers = workers
        self.env = env
        self.options = list(options)
        self.module = module
        self.redis = redis
        self.app = CLUSTER_APPS[runtime]
        self.root = baseline[1] if baseline else ROOT
        adapter = "redis" if redis else "relay"
        prefix = "" if runtime == "eventlet" else f"{runtime}-"
        at = f"@{baseline[0]}" if baseline else ""
        self.name = f"{prefix}{adapter}-{workers}{at}"
        kind = "" if runtime == "eventlet" else f"{runtime} "
        version = f" at {baseline[0]}" if baseline else ""
        self.label = (f"sticky-cluster{version}, {workers} {kind}worker{'s' * (workers > 1)}, "
                      f"{adapter}")
        self._log = None

    def start(self) -> None:
        port = free_port()
        args = [sys.executable, "-m", self.module, "run", self.app, "--workers",
                str(self.workers), "--bind", f"127.0.0.1:{port}", "--log-level", "info",
                *self.options]
        if self.redis:
            args += ["--adapter", self.redis.url, "--channel", f"bench-{self.name}"]
        self._log = tempfile.TemporaryFile()
        # ``python -m`` imports from the working directory first: this tree or the baseline's.
        self.proc = subprocess.Popen(args, cwd=self.root, stdout=self._log,
                                     stderr=subprocess.STDOUT,
                                     env={**os.environ, **self.env} if self.env else None)
        self.master_pid = self.proc.pid
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + START_TIMEOUT
        while "cluster ready" not in self.log():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                log = self.log()
                self.stop()
                raise RuntimeError(f"{self.name} did not start:\n{log}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:  # SIGINT: the fast stop (TERM drains), in any version
            stop_process(self.proc, signal.SIGINT)
            self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def log(self) -> str:
        """The end of the master's log (what a failure shows)."""
        return self.whole_log()[-3000:]

    def whole_log(self) -> str:
        """The master's log so far (its workers' lines included)."""
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")


NGINX_CONF = """\
worker_processes {workers};
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log error;
worker_rlimit_nofile 20000;
events {{ worker_connections 12000; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    upstream app {{ ip_hash; {servers} }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_set_header Host $host;
            proxy_read_timeout 3600s;
        }}
    }}
}}
"""


class NginxPair(Target):
    """nginx ``ip_hash`` in front of two standalone processes joined by a RedisManager."""

    name = "nginx-2"
    label = "nginx ip_hash, 2 eventlet processes, RedisManager"

    def __init__(self, redis: RedisServer) -> None:
        self.redis = redis
        self.backends: list[subprocess.Popen] = []
        self.proc: subprocess.Popen | None = None
        self._prefix = ""

    @staticmethod
    def available() -> bool:
        return shutil.which("nginx") is not None

    def start(self) -> None:
        env = {"BENCH_REDIS_URL": self.redis.url}
        ports = []
        for _ in range(2):
            proc, port = _start_standalone(env)
            self.backends.append(proc)
            ports.append(port)
        self._prefix = tempfile.mkdtemp(prefix="bench-nginx-")
        os.chmod(self._prefix, 0o755)  # nginx's workers drop root; they use the temp paths here
        port = free_port()
        conf = Path(self._prefix, "nginx.conf")
        conf.write_text(NGINX_CONF.format(
            workers=os.cpu_count() or 1, prefix=self._prefix, port=port,
            servers=" ".join(f"server 127.0.0.1:{p};" for p in ports)))
        self.proc = subprocess.Popen(["nginx", "-p", self._prefix, "-c", str(conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{port}"
        wait_port(port)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, signal.SIGQUIT)
            self.proc = None
        for proc in self.backends:
            stop_process(proc)
        self.backends = []
        if self._prefix:
            shutil.rmtree(self._prefix, ignore_errors=True)
            self._prefix = ""

    def pids(self) -> list[int]:
        return [p.pid for p in self.backends] + ([self.proc.pid] if self.proc else [])
