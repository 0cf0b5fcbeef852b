"""What a forward between hosts costs: the same requests direct and through a forward.

    python -m bench.forward_cost [--rounds 1000] [--clients 20] [--seconds 6] [--windows 6]
                                 [--workers 1]

Starts two masters (``bench.app:sio``) on two loopback addresses, host 1 on 127.0.0.11 and
host 2 on 127.0.0.12, joined by ``--peers``. Every session is opened on host 2; its
requests are then sent either straight to host 2 (*direct*) or to host 1, whose forwarder
relays them to host 2 (*forwarded*), in the same run:

* **polling**: one session, two kept-alive connections (one to each host); ``--rounds``
  times, on each connection in turn, a POST of ``42["echo","x"]`` then the GET that
  returns the echo. Each request's round trip is timed; the p50s and what the forward adds.
* **websocket echo**: ``--clients`` sessions upgraded to websocket on each route, each a
  closed loop ``42["echo","x"]`` -> the echo -> again; ``--windows`` windows of each route in
  turn (direct, forwarded, forwarded, direct, …: load from outside the run falls on both),
  ``--seconds`` per route in all; the echoes per second and the forwarded/direct ratio.

Prints one JSON line, with the issue's targets (a forward adds at most 1 ms to a polling
round trip at p50; a forwarded websocket echo reaches at least 0.6x the direct rate).
Loopback only; every process started is stopped by its PID.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

from .loadgen import percentiles, ws_frame
from .targets import ROOT, START_TIMEOUT, stop_process

HOSTS = {1: "127.0.0.11", 2: "127.0.0.12"}
ECHO = b'42["echo","x"]'


def free_port(host: str) -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def start_hosts(workers: int, hosts: dict[int, str] = HOSTS, status: bool = False,
                options: tuple[str, ...] = (),
                ) -> tuple[dict[int, int], list[subprocess.Popen], list]:
    """Start a master for each of ``hosts`` ({host id: loopback address}), joined by
    ``--peers``; their ports, processes and log files. ``status``: each serves its status
    endpoint on the next free port of its address (read it with :func:`host_status`);
    ``options``: more options of ``sticky-cluster run``, the same for each."""
    ports = {host: free_port(ip) for host, ip in hosts.items()}
    peers = ",".join(f"{host}={hosts[host]}:{port}" for host, port in ports.items())
    procs, logs = [], []
    for host, ip in hosts.items():
        log = tempfile.TemporaryFile()
        logs.append(log)
        extra = ["--status-bind", f"{ip}:{STATUS_PORTS.setdefault(host, free_port(ip))}"] if status else []
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "cluster", "run", "bench.app:sio", "--workers", str(workers),
             "--bind", f"{ip}:{ports[host]}", "--host-id", str(host), "--peers", peers,
             "--log-level", "info", *extra, *options],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT))
    deadline = time.monotonic() + START_TIMEOUT
    for proc, log in zip(procs, logs):
        while True:
            log.seek(0)
            text = log.read().decode(errors="replace")
            if "cluster ready" in text:
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                for started in procs:
                    stop_process(started, signal.SIGINT)
                raise RuntimeError(f"a host did not start:\n{text[-3000:]}")
            time.sleep(0.05)
    return ports, procs, logs


def stop_hosts(procs: list[subprocess.Popen], logs: list) -> None:
    """Stop the masters :func:`start_hosts` started, by PID, and close their logs."""
    for proc in procs:
        stop_process(proc, signal.SIGINT)
    for log in logs:
        log.close()


STATUS_PORTS: dict[int, int] = {}
"""The status endpoint's port of each host started with ``status=True``."""


class Http:
    """A kept-alive HTTP/1.1 connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, host: str, port: int) -> "Http":
        return cls(*await asyncio.open_connection(host, port, local_addr=("127.0.0.5", 0)))

    async def request(self, method: str, target: str, body: bytes = b"") -> bytes:
        head = f"{method} {target} HTTP/1.1\r\nHost: bench\r\n"
        if method == "POST":
            head += f"Content-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
        self.writer.write(head.encode() + b"\r\n" + body)
        status = await self.reader.readuntil(b"\r\n")
        if not status.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"{method} {target}: {status!r}")
        length, chunked = 0, False
        while (line := await self.reader.readuntil(b"\r\n")) != b"\r\n":
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
            elif name.lower() == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        if not chunked:
            return await self.reader.readexactly(length)
        body = b""
        while size := int((await self.reader.readuntil(b"\r\n")).strip(), 16):
            body += await self.reader.readexactly(size + 2)
        await self.reader.readuntil(b"\r\n")
        return body

    def close(self) -> None:
        self.writer.close()


async def open_session(port: int) -> str:
    """A Socket.IO session opened on host 2 (polling); its sid."""
    http = await Http.open(HOSTS[2], port)
    try:
        opened = await http.request("GET", "/socket.io/?EIO=4&transport=polling")
        sid = json.loads(opened[opened.index(b"{"):])["sid"]
        await http.request("POST", f"/socket.io/?EIO=4&transport=polling&sid={sid}", b"40")
        while b"40{" not in await http.request(
                "GET", f"/socket.io/?EIO=4&transport=polling&sid={sid}"):
            pass
        return sid
    finally:
        http.close()


async def polling(ports: dict[int, int], rounds: int) -> dict:
    """Round trips of the same session's requests, direct and forwarded, interleaved."""
    sid = await open_session(ports[2])
    target = f"/socket.io/?EIO=4&transport=polling&sid={sid}"
    routes = {"direct": await Http.open(HOSTS[2], ports[2]),
              "forwarded": await Http.open(HOSTS[1], ports[1])}
    times: dict[str, list[float]] = {name: [] for name in routes}
    for index in range(rounds):
        for name in sorted(routes, reverse=index % 2 == 1):
            http = routes[name]
            started = time.perf_counter()
            await http.request("POST", target, ECHO)
            posted = time.perf_counter()
            while b'42["echo"' not in await http.request("GET", target):
                pass
            times[name] += [posted - started, time.perf_counter() - posted]
    for http in routes.values():
        http.close()
    result = {name: percentiles(samples) for name, samples in times.items()}
    result["requests_each"] = len(times["direct"])
    result["added_p50_ms"] = round(result["forwarded"]["p50_ms"] - result["direct"]["p50_ms"], 3)
    return result


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One server websocket frame (unmasked): (opcode, payload)."""
    first, second = await reader.readexactly(2)
    size = second & 0x7F
    if size == 126:
        size = int.from_bytes(await reader.readexactly(2), "big")
    elif size == 127:
        size = int.from_bytes(await reader.readexactly(8), "big")
    return first & 0x0F, await reader.readexactly(size)


async def websocket(sid: str, host: str, port: int) -> tuple[asyncio.StreamReader,
                                                             asyncio.StreamWriter]:
    """Session ``sid`` upgraded to websocket on a connection to ``host``."""
    reader, writer = await asyncio.open_connection(host, port, local_addr=("127.0.0.5", 0))
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(f"GET /socket.io/?EIO=4&transport=websocket&sid={sid} HTTP/1.1\r\n"
                 f"Host: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(f"websocket upgrade: {head[:80]!r}")
    writer.write(ws_frame(b"2probe"))
    while (await read_frame(reader))[1] != b"3probe":
        pass
    writer.write(ws_frame(b"5"))
    return reader, writer


async def echo_windows(ports: dict[int, int], clients: int, seconds: float,
                       windows: int) -> dict:
    """Echoes per second of ``clients`` websocket sessions of host 2, direct and through
    host 1, in ``windows`` alternating windows each (load from outside the run hits both)."""
    routes = {"direct": 2, "forwarded": 1}
    sockets = {}
    for name, via in routes.items():
        sids = [await open_session(ports[2]) for _ in range(clients)]
        sockets[name] = [await websocket(sid, HOSTS[via], ports[via]) for sid in sids]
    totals = {name: {"msgs": 0, "seconds": 0.0} for name in routes}

    async def loop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                   stop: float) -> int:
        echoes = 0
        while time.monotonic() < stop:
            writer.write(ws_frame(ECHO))
            while True:
                _opcode, payload = await read_frame(reader)
                if payload.startswith(b'42["echo"'):
                    break
                if payload == b"2":
                    writer.write(ws_frame(b"3"))
            echoes += 1
        return echoes

    for window in range(2 * windows):
        name = sorted(routes, reverse=window // 2 % 2 == 1)[window % 2]
        started = time.monotonic()
        counts = await asyncio.gather(*(loop(reader, writer, started + seconds / windows)
                                        for reader, writer in sockets[name]))
        totals[name]["msgs"] += sum(counts)
        totals[name]["seconds"] += time.monotonic() - started
    for pairs in sockets.values():
        for _reader, writer in pairs:
            writer.close()
    result = {name: {"msgs": total["msgs"], "seconds": round(total["seconds"], 3),
                     "msgs_per_s": round(total["msgs"] / total["seconds"], 1)}
              for name, total in totals.items()}
    result["ratio"] = round(result["forwarded"]["msgs_per_s"] / result["direct"]["msgs_per_s"], 3)
    return result


async def measure(ports: dict[int, int], args: argparse.Namespace) -> dict:
    result: dict = {"polling": await polling(ports, args.rounds),
                    "websocket_echo": await echo_windows(ports, args.clients, args.seconds,
                                                         args.windows)}
    result["targets"] = {
        "polling_added_p50_ms_at_most_1": result["polling"]["added_p50_ms"] <= 1.0,
        "echo_ratio_at_least_0.6": result["websocket_echo"]["ratio"] >= 0.6}
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.forward_cost",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=1000,
                        help="polling rounds (a POST and a GET on each route)")
    parser.add_argument("--clients", type=int, default=20, help="websocket echo clients")
    parser.add_argument("--seconds", type=float, default=6.0,
                        help="seconds of echoes on each route, all windows together")
    parser.add_argument("--windows", type=int, default=6,
                        help="echo windows of each route, direct and forwarded in turn")
    parser.add_argument("--workers", type=int, default=1, help="workers of each host")
    args = parser.parse_args(argv)
    ports, procs, logs = start_hosts(args.workers)
    try:
        result = asyncio.run(measure(ports, args))
        result.update(workers=args.workers, clients=args.clients, rounds=args.rounds)
        print(json.dumps(result))
    finally:
        stop_hosts(procs, logs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
