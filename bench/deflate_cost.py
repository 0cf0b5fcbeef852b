"""What permessage-deflate costs a worker: browser-like clients, with and without ``--websocket-deflate``.

    python -m bench.deflate_cost [--clients 2000] [--runtimes eventlet,gevent,asyncio,threading]
                                 [--broadcasts 20] [--size 2000]

Every browser offers permessage-deflate. For each runtime, a cluster of ONE worker (so every
client is in the process measured) is started without the option, then with it; each time
``--clients`` websocket clients that offer it, as browsers do (the ``websockets`` library's
client, each from its own loopback address, answering pings), join one room; then one more
client asks for ``--broadcasts`` broadcasts of ``--size`` bytes to that room, one every
``--interval`` seconds. Per run: whether the worker granted deflate, the worker's RSS once
the clients are connected and once every broadcast has arrived, per client above the empty
worker, and the worker's CPU per delivery (its CPU during the broadcasts / deliveries). One
JSON line per run, then a markdown table.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

import websockets.asyncio.client

from bench.measure import cpu_seconds
from bench.targets import Cluster

RUNTIMES = ("eventlet", "gevent", "asyncio", "threading")
SETTLE = 2.0
"""Seconds left to the worker after the clients connected and after the broadcasts, before its RSS is read."""


def source(index: int) -> str:
    """The loopback address of client ``index`` (127.0.10.1 and up; 250 per /24)."""
    return f"127.0.{10 + index // 250}.{1 + index % 250}"


class Browsers:
    """``count`` websocket clients that offer permessage-deflate, each in room ``r``."""

    def __init__(self, url: str, count: int) -> None:
        self.url = url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
        self.count = count
        self.joined = 0
        self.granted = 0
        self.received = 0
        self._tasks: list[asyncio.Task[None]] = []

    async def connect(self, timeout: float) -> None:
        """Open every client (100 at a time) and wait until all have joined the room."""
        for index in range(self.count):
            self._tasks.append(asyncio.create_task(self._client(index)))
            if index % 100 == 99:
                await asyncio.sleep(0.05)
        deadline = time.monotonic() + timeout
        while self.joined < self.count and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        if self.joined < self.count:
            raise RuntimeError(f"only {self.joined} of {self.count} clients joined")

    async def _client(self, index: int) -> None:
        async with websockets.asyncio.client.connect(
                self.url, compression="deflate", local_addr=(source(index), 0),
                open_timeout=60, ping_interval=None, max_size=None) as ws:
            self.granted += "permessage-deflate" in ws.response.headers.get(
                "Sec-WebSocket-Extensions", "")
            await ws.recv()  # the open packet
            await ws.send("40")
            await ws.recv()  # connected
            await ws.send('42["join","r"]')
            self.joined += 1
            async for message in ws:
                if message == "2":
                    await ws.send("3")
                elif message.startswith('42["bcast"'):
                    self.received += 1

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def broadcast(url: str, browsers: Browsers, count: int, size: int, interval: float,
                    timeout: float) -> None:
    """Ask for ``count`` broadcasts of ``size`` bytes to the room; wait until all arrived."""
    async with websockets.asyncio.client.connect(
            url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket",
            compression=None, ping_interval=None) as sender:
        await sender.recv()
        await sender.send("40")
        await sender.recv()
        message = '42["bcast",' + json.dumps({"room": "r", "ts": 0, "pad": "x" * size}) + "]"
        for _ in range(count):
            await sender.send(message)
            await asyncio.sleep(interval)
        expected = count * browsers.count
        deadline = time.monotonic() + timeout
        while browsers.received < expected and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        if browsers.received < expected:
            raise RuntimeError(f"{browsers.received} of {expected} broadcasts arrived")


def one_run(runtime: str, deflate: bool, args: argparse.Namespace) -> dict[str, Any]:
    """One cluster of one worker, with or without ``--websocket-deflate``, measured."""
    limit = (["--threads", str(args.clients + 100)] if runtime == "threading"
             else ["--worker-connections", str(args.clients + 100)])
    cluster = Cluster(1, None, runtime,
                      options=[*limit, *(["--websocket-deflate"] if deflate else [])])
    cluster.start()
    try:
        [worker] = cluster.serving()
        empty = worker.memory_info().rss

        async def scenario() -> dict[str, Any]:
            browsers = Browsers(cluster.url, args.clients)
            try:
                await browsers.connect(args.timeout)
                await asyncio.sleep(SETTLE)
                connected = worker.memory_info().rss
                before = cpu_seconds(worker.pid)
                await broadcast(cluster.url, browsers, args.broadcasts, args.size,
                                args.interval, args.timeout)
                spent = cpu_seconds(worker.pid) - before
                await asyncio.sleep(SETTLE)
                after = worker.memory_info().rss
            finally:
                await browsers.close()
            per_client = 1024 * args.clients
            return {"runtime": runtime, "websocket_deflate": deflate,
                    "clients": args.clients, "granted": browsers.granted,
                    "rss_empty_mb": round(empty / 2**20, 1),
                    "rss_connected_mb": round(connected / 2**20, 1),
                    "rss_after_broadcasts_mb": round(after / 2**20, 1),
                    "kb_per_client_connected": round((connected - empty) / per_client, 1),
                    "kb_per_client_after_broadcasts": round((after - empty) / per_client, 1),
                    "cpu_us_per_delivery": round(
                        spent / (args.broadcasts * args.clients) * 1e6, 1)}

        return asyncio.run(scenario())
    finally:
        cluster.stop()


def table(rows: list[dict[str, Any]]) -> str:
    """The runs as a markdown table."""
    lines = ["| runtime | `--websocket-deflate` | granted | KB per client, connected | "
             "after the broadcasts | worker CPU per delivery |",
             "| --- | --- | ---: | ---: | ---: | ---: |"]
    for row in rows:
        lines.append(f"| {row['runtime']} | {'on' if row['websocket_deflate'] else 'off'} | "
                     f"{row['granted']} | {row['kb_per_client_connected']} | "
                     f"{row['kb_per_client_after_broadcasts']} | "
                     f"{row['cpu_us_per_delivery']} µs |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.deflate_cost", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=2000)
    parser.add_argument("--runtimes", default=",".join(RUNTIMES))
    parser.add_argument("--broadcasts", type=int, default=20)
    parser.add_argument("--size", type=int, default=2000, help="bytes of each broadcast")
    parser.add_argument("--interval", type=float, default=0.5,
                        help="seconds between two broadcasts")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds for the clients to join, and for the broadcasts to arrive")
    args = parser.parse_args(argv)
    runtimes = args.runtimes.split(",")
    unknown = [name for name in runtimes if name not in RUNTIMES]
    if unknown or not 1 <= args.clients <= 15_000:
        parser.error(f"unknown runtime {unknown[0]!r}" if unknown
                     else "--clients: 1 to 15,000 (one worker's file descriptors)")
    rows = []
    for runtime in runtimes:
        for deflate in (False, True):
            row = one_run(runtime, deflate, args)
            print(json.dumps(row), flush=True)
            rows.append(row)
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
