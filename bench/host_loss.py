"""A host killed with -9 under load, behind a round-robin balancer: how fast its clients are back.

    python -m bench.host_loss [--clients 60] [--workers 1] [--delay 0.5]
    python -m bench.host_loss --fleet [--clients 3000] [--workers 1]

Starts three masters (``bench.app:sio``) on 127.0.0.11, .12 and .13 joined by ``--peers``
behind a real round-robin nginx with upstream keep-alive (as bench.balancer_polling), and
``--clients`` python-socketio clients (websocket, each from its own loopback address, their
reconnection on, ``--delay`` s before an attempt, no randomization so that the attempt's time
is known). Then host 3's master and workers are killed with SIGKILL at once, and 10 new
clients connect. Prints one JSON line:

* ``lost``: the clients that lost their connection (those served by host 3, directly or
  through another host's forwarder); ``back``: how many reconnected; ``failed``: the
  attempts that did not connect (python-socketio tries again: counted, not fatal);
* ``back_after_attempt_ms``: from each lost client's first reconnect attempt (its disconnect
  plus ``--delay``) until it was connected again: p50 / p99 / max (the issue's target: every
  one within 2 s);
* ``undisturbed``: clients of the other hosts that never lost their connection; ``new``:
  new clients connected after the kill.

``--fleet``: the same at scale, with bench.scale's clients instead (:mod:`bench.host_loss_fleet`:
raw websocket clients in several load processes, each from its own loopback address, that
reconnect with socket.io-client's default randomized backoff, 0.5 to 1.5 s before the first
attempt), nginx with a worker per 4,750 clients (at least 2, ``reuseport``) and the hosts'
workers allowed 19,000 connections each. The JSON line has the clients ``lost`` and ``back``
(clients, not events), the ``failed`` attempts, ``back_after_kill_s`` (from the kill until
each lost client was back: p50 / p99 / max, the backoff included), ``others_dropped`` (clients
of hosts 1 and 2 that lost their connection) and ``new`` (of 10 new clients, those connected
after the storm). ``--clients`` at most 38,000 per worker of a host (the fd limit, once
two hosts hold them all).

Loopback only; every process started is stopped by its PID.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import time

import psutil

from . import host_loss_fleet
from .balancer_polling import HOSTS, Nginx, round_robin
from .forward_cost import free_port, start_hosts, stop_hosts
from .loadgen import percentiles
from .scale import FD_PER_WORKER
from .targets import wait_port

BACK_TIMEOUT = 30.0
"""Seconds the lost clients get to come back before the run reports the missing ones."""


class Client:
    """A python-socketio AsyncClient from its own loopback address, its events timed."""

    def __init__(self, index: int, delay: float) -> None:
        import aiohttp
        import socketio

        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(
            local_addr=(f"127.0.2.{index + 1}", 0)))
        self.sio = socketio.AsyncClient(http_session=self.session, reconnection_delay=delay,
                                        reconnection_delay_max=delay, randomization_factor=0)
        self.connects: list[float] = []
        self.disconnects: list[float] = []
        self.failures = 0
        self.sio.on("connect", lambda: self.connects.append(time.monotonic()))
        self.sio.on("disconnect", lambda *_reason: self.disconnects.append(time.monotonic()))
        self.sio.on("connect_error", self._failed)
        self.pid = 0

    def _failed(self, *_error: object) -> None:
        self.failures += 1

    async def connect(self, url: str) -> None:
        await self.sio.connect(url, transports=["websocket"], wait_timeout=20)
        self.pid = await self.sio.call("whoami", timeout=10)

    async def close(self) -> None:
        try:
            await asyncio.wait_for(self.sio.disconnect(), 5)
        except Exception:  # noqa: BLE001 - the figures are taken: leave anyway
            pass
        await self.session.close()


def host_pids(master: int) -> set[int]:
    """The pids of a master and of every process under it."""
    process = psutil.Process(master)
    return {master, *(child.pid for child in process.children(recursive=True))}


async def measure(url: str, victim: set[int], args: argparse.Namespace) -> dict:
    clients = [Client(index, args.delay) for index in range(args.clients)]
    await asyncio.gather(*(client.connect(url) for client in clients))
    on_victim = [client for client in clients if client.pid in victim]
    killed_at = time.monotonic()
    for pid in victim:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + BACK_TIMEOUT
    while time.monotonic() < deadline:
        lost = [client for client in clients if client.disconnects]
        if lost and all(client.connects[-1] > client.disconnects[0] for client in lost) \
                and time.monotonic() - killed_at > 3 * args.delay + 2:
            break
        await asyncio.sleep(0.1)
    lost = [client for client in clients if client.disconnects]
    back = [client for client in lost if client.connects[-1] > client.disconnects[0]]
    newcomers = [Client(args.clients + index, args.delay) for index in range(10)]
    new = await asyncio.gather(*(client.connect(url) for client in newcomers),
                               return_exceptions=True)
    after = [client.connects[-1] - (client.disconnects[0] + args.delay) for client in back]
    result = {
        "clients": args.clients, "on_killed_host_by_whoami": len(on_victim),
        "lost": len(lost), "back": len(back), "failed": sum(c.failures for c in lost),
        "back_after_attempt_ms": percentiles(after) if after else None,
        "undisturbed": sum(1 for client in clients if not client.disconnects),
        "new": sum(1 for outcome in new if outcome is None),
    }
    result["target_every_one_back_within_2s"] = bool(
        back and len(back) == len(lost) and max(after) <= 2.0)
    for client in clients + newcomers:
        await client.close()
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.host_loss",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--fleet", action="store_true",
                        help="bench.scale's clients (thousands) instead of python-socketio's")
    parser.add_argument("--clients", type=int, default=None,
                        help="websocket clients (default 60; with --fleet 3000)")
    parser.add_argument("--workers", type=int, default=1, help="workers of each host")
    parser.add_argument("--delay", type=float, default=None,
                        help="seconds a client waits before a reconnect attempt (default 0.5; "
                             "not with --fleet: its clients wait as socket.io-client's do)")
    args = parser.parse_args(argv)
    if args.clients is None:
        args.clients = 3000 if args.fleet else 60
    if args.clients < 1 or args.workers < 1:
        parser.error("--clients and --workers: at least 1")
    if args.fleet:
        if args.delay is not None:
            parser.error("--delay: not with --fleet (its clients wait as socket.io-client's do)")
        if args.clients > host_loss_fleet.most_clients(args.workers):
            parser.error(f"--clients: at most {host_loss_fleet.most_clients(args.workers):,} "
                         f"with --workers {args.workers} (the fd limit, once two hosts hold them "
                         "all; one loopback address each)")
    elif args.delay is None:
        args.delay = 0.5
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for name in ("engineio.client", "socketio.client"):  # lost connections are the point
        logging.getLogger(name).setLevel(logging.CRITICAL)
    options = ("--worker-connections", str(FD_PER_WORKER)) if args.fleet else ()
    ports, procs, logs = start_hosts(args.workers, HOSTS, options=options)
    server = None
    try:
        hosts = {host: (HOSTS[host], port) for host, port in ports.items()}
        port = free_port("127.0.0.1")
        nginx_procs = host_loss_fleet.nginx_workers(args.clients) if args.fleet else 1
        server = Nginx(round_robin(hosts, port, reuseport=nginx_procs > 1,
                                   sources=host_loss_fleet.UPSTREAM_SOURCES if args.fleet else 0),
                       nginx_procs)
        wait_port(port)
        victim = host_pids(procs[2].pid)
        url = f"http://127.0.0.1:{port}"
        if args.fleet:
            result = host_loss_fleet.measure(url, victim, args)
            result.update(workers=args.workers, nginx_workers=nginx_procs)
        else:
            result = asyncio.run(measure(url, victim, args))
            result.update(workers=args.workers, delay=args.delay)
        print(json.dumps(result))
    finally:
        if server is not None:
            server.stop()
        stop_hosts(procs, logs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
