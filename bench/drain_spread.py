"""Reconnects per second at the new workers during a HUP, with and without --drain-spread.

    python -m bench.drain_spread [--clients 2000] [--spreads 0,30] [--procs 4]

For each spread: start a fresh 2-worker cluster (``bench.app:sio``, ``--graceful-timeout``
2 s), connect ``--clients`` python-socketio clients on websocket, each from its own loopback
address, with the client's own reconnection (1 s delay, randomised ±50 %, doubling up to 5 s
while it fails, as shipped), send the master a HUP, and record when each client is connected
again (until every one is). The old workers close
the sessions left at the graceful timeout: all at once with ``--drain-spread 0`` (how every
drain ended before the option), evenly over the window otherwise. Prints one JSON line per
spread (peak reconnects in any one second, the seconds the reconnects took, per-second
counts; the same for the connections the master accepted, which counts the attempts that
failed and were retried too) and a last line comparing the peaks. Clients are split over ``--procs`` processes so
that the load generator is not what limits the rate. Loopback only; every process started
is stopped by its PID.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import json
import logging
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Callable

from .targets import ROOT, free_port, stop_process

GRACEFUL = 2.0
CONNECT_CONCURRENCY = 50
SETTLE_TIMEOUT = 300.0
"""Seconds to wait for every client to connect, or to come back after the HUP."""
QUIET = 20.0
"""Seconds without a client coming back after which the measure ends (a client the
overloaded workers did not take in time retries with backoff: it may take long)."""
SAMPLE_INTERVAL = 0.2
"""Seconds between two looks at the master's accepted connections."""


def source(index: int) -> str:
    """Client ``index``'s own loopback address: 127.0.10.1, 127.0.10.2, …"""
    return f"127.0.{10 + index // 250}.{1 + index % 250}"


def client_process(url: str, indexes: range, out: multiprocessing.Queue,
                   connects: multiprocessing.Value, done: multiprocessing.Event) -> None:
    """Connect the clients ``indexes``, then note every (re)connect (its time, and one more
    in ``connects``) until ``done``; then send the times and leave."""
    asyncio.run(_clients(url, indexes, out, connects, done))


async def _clients(url: str, indexes: range, out: multiprocessing.Queue,
                   connects: multiprocessing.Value, done: multiprocessing.Event) -> None:
    import aiohttp
    import socketio

    for name in ("engineio.client", "socketio.client"):  # a lost connection is expected here
        logging.getLogger(name).setLevel(logging.CRITICAL)
    times: list[float] = []
    clients = []
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    def connected() -> None:
        times.append(time.monotonic())
        with connects.get_lock():
            connects.value += 1

    async def one(index: int) -> None:
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(local_addr=(source(index), 0), limit=0))
        client = socketio.AsyncClient(http_session=session, reconnection=True)
        client.on("connect", connected)
        clients.append((client, session))
        async with gate:
            await client.connect(url, transports=["websocket"], wait_timeout=60)

    await asyncio.gather(*(one(index) for index in indexes))
    await asyncio.get_running_loop().run_in_executor(None, done.wait)
    out.put(times)
    for client, session in clients:
        try:
            await asyncio.wait_for(client.disconnect(), 5)
        except Exception:  # noqa: BLE001 - the measure is taken; leave anyway
            pass
        await session.close()


def measure(clients: int, spread: float, procs: int) -> dict:
    """One cluster, ``clients`` clients, one HUP: when the clients came back."""
    port, status_port = free_port(), free_port()
    log = tempfile.NamedTemporaryFile(prefix="drain-spread-", suffix=".log", delete=False)
    master = subprocess.Popen(
        [sys.executable, "-m", "cluster", "run", "bench.app:sio", "--workers", "2",
         "--bind", f"127.0.0.1:{port}", "--graceful-timeout", str(GRACEFUL),
         "--drain-spread", str(spread), "--status-bind", f"127.0.0.1:{status_port}"],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    accepted = AcceptedCounter(f"http://127.0.0.1:{status_port}/status")
    out: multiprocessing.Queue = multiprocessing.Queue()
    connects = multiprocessing.Value("i", 0)
    done = multiprocessing.Event()
    workers: list[multiprocessing.Process] = []
    try:
        _wait_log(Path(log.name), "cluster ready", master)
        url = f"http://127.0.0.1:{port}"
        share = -(-clients // procs)
        for first in range(0, clients, share):
            proc = multiprocessing.Process(
                target=client_process, args=(url, range(first, min(first + share, clients)),
                                             out, connects, done))
            proc.start()
            workers.append(proc)
        _wait_until(lambda: connects.value >= clients, "every client to connect")
        accepted.start()
        hup_at = time.monotonic()
        os.kill(master.pid, signal.SIGHUP)
        _wait_back(lambda: connects.value - clients, clients)
        accepted.stop()
        done.set()
        times = [t for _ in workers for t in out.get(timeout=60) if t > hup_at]
    finally:
        done.set()
        for proc in workers:
            proc.join(30)
            if proc.is_alive():
                proc.kill()
                proc.join()
        stop_process(master, signal.SIGINT)
        log.close()
        os.unlink(log.name)
    per_second = collections.Counter(int(t - hup_at) for t in times)
    seconds = range(min(per_second, default=0), max(per_second, default=-1) + 1)
    offered = accepted.per_second(hup_at)
    return {"drain_spread": spread, "clients": clients, "reconnected": len(times),
            "peak_per_s": max(per_second.values(), default=0),
            "accepted_peak_per_s": max(offered, default=0),
            "reconnect_seconds": round(max(times) - min(times), 2) if times else 0.0,
            "per_second_after_hup": [per_second.get(s, 0) for s in seconds],
            "accepted_per_second_after_hup": offered, "first_second": seconds.start}


class AcceptedCounter:
    """Samples the master's count of accepted connections (``/status``) in a thread: the
    connection attempts that reach the workers, retries of failed ones included."""

    def __init__(self, url: str) -> None:
        self._url = url
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_INTERVAL):
            try:
                with urllib.request.urlopen(self._url, timeout=5) as answer:
                    count = json.load(answer)["connections"]["accepted"]
            except OSError:
                continue
            self.samples.append((time.monotonic(), count))

    def per_second(self, since: float) -> list[int]:
        """Connections accepted in each second from ``since`` on (from the samples)."""
        marks = []
        second = 0
        for at, count in self.samples:
            while at >= since + second:
                marks.append(count)
                second += 1
        return [later - earlier for earlier, later in zip(marks, marks[1:])]


def _wait_back(back: Callable[[], int], clients: int) -> None:
    """Wait until every client is back, or none came back for :data:`QUIET` seconds."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    last, last_change = back(), time.monotonic()
    while back() < clients and time.monotonic() < deadline:
        time.sleep(0.2)
        if back() != last:
            last, last_change = back(), time.monotonic()
        elif last and time.monotonic() - last_change > QUIET:
            return


def _wait_until(condition: Callable[[], bool], what: str | Callable[[], str]) -> None:
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what if isinstance(what, str) else what()}")
        time.sleep(0.1)


def _wait_log(path: Path, text: str, master: subprocess.Popen) -> None:
    """Wait until the master's log says ``text``."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while text not in path.read_text(errors="replace"):
        if master.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"no {text!r} from the master:\n{path.read_text()[-2000:]}")
        time.sleep(0.1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.drain_spread", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=2000)
    parser.add_argument("--spreads", default="0,30",
                        help="comma-separated --drain-spread values; the first is the base")
    parser.add_argument("--procs", type=int, default=4, help="client processes")
    args = parser.parse_args(argv)
    results = []
    for spread in (float(s) for s in args.spreads.split(",")):
        results.append(measure(args.clients, spread, args.procs))
        print(json.dumps(results[-1]), flush=True)
    summary = {}
    for key in ("peak_per_s", "accepted_peak_per_s"):
        base = results[0][key]
        summary[key] = {r["drain_spread"]: r[key] for r in results}
        summary[f"{key}_fall"] = {r["drain_spread"]: round(base / max(1, r[key]), 1)
                                  for r in results[1:]}
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
