"""The master's ceiling: hand-offs per master CPU-second, against nginx and HAProxy in TCP mode.

    python -m bench.ceiling [--seconds 10] [--concurrency 64] [--procs 2]

The same load, one after the other, against three systems on this machine:

* the sticky-cluster master alone (:mod:`bench.closer`: 2 workers that close every
  connection they are handed): accept, peek, decide, place, ``sendmsg``; twice, with its
  hand-off loop in C (the default) and in Python (``STICKY_CLUSTER_PURE_PYTHON=1``);
* nginx (``stream`` module, 1 worker process) proxying each connection to a sink;
* HAProxy (``mode tcp``, 1 thread) proxying each connection to the same sink.

The load (:func:`hammer`): ``--procs`` processes, ``--concurrency`` connections in flight
each, every one a new TCP connection from one of 254 loopback sources that sends an
Engine.IO handshake's request line and closes. The figure is connections per CPU-second of
the process that does the work (the master; nginx's worker; HAProxy), its CPU read with
``psutil`` from the first connection until it is idle again after the last.
"""
from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable

import psutil

from bench import loadgen
from bench.measure import cpu_seconds
from bench.targets import Cluster, free_port, stop_process, wait_port
from cluster.intake.fast_path import PURE_PYTHON_ENV

REQUEST = b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: bench\r\n\r\n"
SOURCES = 254
"""Loopback sources 127.0.4.1 .. 127.0.4.254 (TIME_WAIT stays on the client's side)."""

NGINX_MODULE = "/usr/lib/nginx/modules/ngx_stream_module.so"
NGINX_STREAM = """\
{load_module}
worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log error;
worker_rlimit_nofile 20000;
events {{ worker_connections 10000; }}
stream {{
    server {{ listen 127.0.0.1:{port} backlog=2048; proxy_pass 127.0.0.1:{sink}; }}
}}
"""
HAPROXY_TCP = """\
global
    maxconn 9000
    nbthread 1
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend bench
    bind 127.0.0.1:{port}
    default_backend sink
backend sink
    server sink 127.0.0.1:{sink}
"""


def _sink(sock: socket.socket) -> None:
    """Accept and close, for ever (a forked process; killed by PID)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        conn, _ = sock.accept()
        conn.close()


async def _connections(port: int, share: int, seconds: float, concurrency: int) -> int:
    loop = asyncio.get_running_loop()
    end = loadgen.now() + seconds
    done = 0

    async def one(k: int) -> None:
        nonlocal done
        while loadgen.now() < end:
            sock = socket.socket()
            try:
                sock.setblocking(False)
                sock.setsockopt(socket.SOL_IP, loadgen.IP_BIND_ADDRESS_NO_PORT, 1)
                sock.bind((f"127.0.4.{1 + (k + share) % SOURCES}", 0))
                await loop.sock_connect(sock, ("127.0.0.1", port))
                await loop.sock_sendall(sock, REQUEST)
                done += 1
            except OSError:
                await asyncio.sleep(0.01)
            finally:
                sock.close()
            k += concurrency

    await asyncio.gather(*(one(k) for k in range(concurrency)))
    return done


def _hammer_one(port: int, share: int, seconds: float, concurrency: int, out: Any) -> None:
    loadgen.raise_nofile()
    out.send(asyncio.run(_connections(port, share * concurrency, seconds, concurrency)))
    out.close()


def hammer(port: int, seconds: float, concurrency: int, procs: int) -> int:
    """Connections made to 127.0.0.1:``port`` in ``seconds`` (each: connect, send the request
    line, close) by ``procs`` processes of ``concurrency`` each."""
    ctx = multiprocessing.get_context("fork")
    pipes, workers = [], []
    for share in range(procs):
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_hammer_one, args=(port, share, seconds, concurrency, child),
                           daemon=True)
        proc.start()
        child.close()
        pipes.append(parent)
        workers.append(proc)
    total = 0
    for parent, proc in zip(pipes, workers):
        if parent.poll(seconds + 60):
            total += parent.recv()
        proc.join(10)
        if proc.is_alive():
            proc.kill()
            proc.join(5)
    return total


def _settle(pids: list[int], quiet: float = 0.02, timeout: float = 30.0) -> None:
    """Wait until ``pids`` use under ``quiet`` of a core (over 0.5 s), or ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = sum(cpu_seconds(p) for p in pids)
        time.sleep(0.5)
        if sum(cpu_seconds(p) for p in pids) - before < quiet * 0.5:
            return


def measure(port: int, pids: list[int], seconds: float, concurrency: int,
            procs: int) -> dict[str, Any]:
    """The load on ``port``; connections per CPU-second of ``pids`` (their own CPU only)."""
    _settle(pids)
    before = sum(cpu_seconds(p) for p in pids)
    t0 = time.monotonic()
    made = hammer(port, seconds, concurrency, procs)
    _settle(pids)
    cpu = sum(cpu_seconds(p) for p in pids) - before
    return {"connections": made, "seconds": round(time.monotonic() - t0, 1),
            "cpu_seconds": round(cpu, 3),
            "per_cpu_second": round(made / cpu) if cpu > 0 else None,
            "us_per_connection": round(cpu / made * 1e6, 1) if made else None}


class Sink:
    """A process that accepts connections and closes them: the proxies' backend."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=4096)
        self.port = self.sock.getsockname()[1]
        self.proc = multiprocessing.get_context("fork").Process(target=_sink, args=(self.sock,),
                                                                daemon=True)

    def start(self) -> None:
        self.proc.start()

    def stop(self) -> None:
        if self.proc.pid is not None and self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5)
        self.sock.close()


def _started(proc: subprocess.Popen, port: int, sig: int) -> None:
    """Wait until ``proc`` listens on ``port``; stop it (by PID) if it does not."""
    try:
        wait_port(port, timeout=10)
    except RuntimeError:
        stop_process(proc, sig)
        raise


def _nginx(prefix: Path, sink: int) -> tuple[subprocess.Popen, int, list[int]]:
    port = free_port()
    module = f"load_module {NGINX_MODULE};" if os.path.exists(NGINX_MODULE) else ""
    conf = prefix / "nginx.conf"
    conf.write_text(NGINX_STREAM.format(load_module=module, prefix=prefix, port=port, sink=sink))
    proc = subprocess.Popen(["nginx", "-p", str(prefix), "-c", str(conf)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _started(proc, port, signal.SIGQUIT)
    return proc, port, [c.pid for c in psutil.Process(proc.pid).children()]


def _haproxy(prefix: Path, sink: int) -> tuple[subprocess.Popen, int, list[int]]:
    port = free_port()
    conf = prefix / "haproxy.cfg"
    conf.write_text(HAPROXY_TCP.format(port=port, sink=sink))
    proc = subprocess.Popen(["haproxy", "-db", "-f", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    _started(proc, port, signal.SIGTERM)
    return proc, port, [proc.pid]


def handoffs(status_port: int) -> int:
    """The master's hand-offs so far, from its ``/metrics`` (every reason added up)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{status_port}/metrics", timeout=10) as r:
        text = r.read().decode()
    return int(sum(float(line.rpartition(" ")[2]) for line in text.splitlines()
                   if line.startswith("sticky_cluster_handoffs_total")))


def _master(loop: str, env: dict[str, str] | None, seconds: float, concurrency: int,
            procs: int) -> dict[str, Any]:
    """The master alone with its hand-off ``loop`` (``C`` or ``Python``), per CPU-second."""
    status = free_port()
    master = Cluster(2, None, module="bench.closer", env=env,
                     options=["--status-bind", f"127.0.0.1:{status}"])
    master.start()
    try:
        if f"(hand-off loop in {loop}" not in master.log():
            return {"error": f"the master does not hand off in {loop}: {master.log()[-300:]}"}
        port = int(master.url.rpartition(":")[2])
        before = handoffs(status)
        result = measure(port, [master.master_pid], seconds, concurrency, procs)
        result["handoffs"] = handed = handoffs(status) - before
        cpu = result["cpu_seconds"]
        result["per_cpu_second"] = round(handed / cpu) if cpu > 0 else None
        result["us_per_connection"] = round(cpu / handed * 1e6, 1) if handed else None
        return result
    finally:
        master.stop()


def run(seconds: float, log: Callable[[str], None], concurrency: int = 64,
        procs: int = 2) -> dict[str, Any]:
    """The master, nginx and HAProxy under the same load, one after the other."""
    out: dict[str, Any] = {"seconds": seconds, "concurrency": concurrency, "procs": procs}
    for name, loop, env in (("master", "C", None),
                            ("master_python", "Python", {PURE_PYTHON_ENV: "1"})):
        out[name] = _master(loop, env, seconds, concurrency, procs)
        log(f"ceiling: {name} {out[name]}")
    sink = Sink()
    sink.start()
    prefix = Path(tempfile.mkdtemp(prefix="bench-ceiling-"))
    os.chmod(prefix, 0o755)  # nginx's worker drops root
    try:
        for name, start, sig in (("nginx", _nginx, signal.SIGQUIT),
                                 ("haproxy", _haproxy, signal.SIGTERM)):
            if shutil.which(name) is None:
                out[name] = {"error": f"{name} is not installed"}
                continue
            proc, port, pids = start(prefix, sink.port)
            try:
                out[name] = measure(port, pids, seconds, concurrency, procs)
            finally:
                stop_process(proc, sig)
            log(f"ceiling: {name} {out[name]}")
    finally:
        sink.stop()
        shutil.rmtree(prefix, ignore_errors=True)
    for name in ("nginx", "haproxy"):
        theirs = out.get(name, {}).get("per_cpu_second")
        for master in ("master", "master_python"):
            if theirs and out[master].get("per_cpu_second"):
                out[f"{master}_vs_{name}"] = round(out[master]["per_cpu_second"] / theirs, 2)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.ceiling", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10.0, help="seconds per system (default 10)")
    ap.add_argument("--concurrency", type=int, default=64,
                    help="connections in flight per load process (default 64)")
    ap.add_argument("--procs", type=int, default=2, help="load processes (default 2)")
    args = ap.parse_args(argv)
    if args.seconds <= 0 or args.concurrency < 1 or args.procs < 1:
        ap.error("--seconds > 0, --concurrency >= 1, --procs >= 1")
    import json

    result = run(args.seconds, lambda text: print(text, file=sys.stderr, flush=True),
                 args.concurrency, args.procs)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
