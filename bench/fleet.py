"""A fleet of websocket clients held open by one load process, driven by :mod:`bench.scale`.

Each client is the load generator's raw Socket.IO client (:class:`bench.loadgen.WsClient`:
Engine.IO v4 over a direct websocket, pings answered) that joins room :data:`ROOM` and asks
which process serves it (``whoami``). A client that loses its connection reconnects as
socket.io-client does by default (:func:`backoff`: 1 s doubling to 5 s, randomized by 0.5,
for ever), so a dead worker or a drain is a storm of reconnects, as it is in production.

The orchestrator talks to each fleet process over a pipe, one command and one answer at a
time (:meth:`Fleet.command`): ``connect`` (its clients from one slot up to another),
``stats`` (counters since the last ``mark``, with when each client was lost and when it was
back, and the failed attempts by what they met), ``mark``, ``send`` (one broadcast to the room),
``deliveries`` (what the clients received of one broadcast), ``close``.
"""
from __future__ import annotations

import asyncio
import gc
import json
import multiprocessing
import random
import time
from array import array
from multiprocessing.connection import Connection
from typing import Any

from bench import loadgen

ROOM = "all"
"""The room every client joins: a broadcast to it reaches every client held."""

RECONNECT_DELAY = 1.0
RECONNECT_DELAY_MAX = 5.0
RANDOMIZATION = 0.5
"""socket.io-client's defaults: ``reconnectionDelay``, ``reconnectionDelayMax``,
``randomizationFactor``."""

LATE_PING = 1.0
"""A ping that comes more than this many seconds after the ping interval is late."""

CONNECT_TIMEOUT = 20.0
"""Seconds one connection attempt (TCP, upgrade, namespace, join, whoami) may take."""


def backoff(attempt: int, rand: random.Random = random._inst) -> float:  # type: ignore[attr-defined]
    """Seconds before reconnect attempt ``attempt`` (0 first), as socket.io-client's
    ``Backoff``: ``delay × 2^attempt`` with a deviation of ``± factor × that``, capped."""
    base = min(RECONNECT_DELAY * 2 ** attempt, RECONNECT_DELAY_MAX)
    deviation = rand.random() * RANDOMIZATION * base
    base = base - deviation if int(rand.random() * 10) & 1 == 0 else base + deviation
    return min(base, RECONNECT_DELAY_MAX)


def failure_kind(exc: BaseException) -> str:
    """What a failed connection attempt met, in a word or two: ``timeout`` (no answer within
    :data:`CONNECT_TIMEOUT`), ``refused``, ``reset``, ``http 503`` (the upgrade answered with
    that status: the master sheds when every worker is late), ``lost`` (the connection
    ended, closed or reset, after the upgrade's answer and before the session opened),
    ``lost before the upgrade`` (before its answer), or the exception's name."""
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, (ConnectionResetError, BrokenPipeError)):
        return "reset"
    if isinstance(exc, loadgen.ProtocolError):
        what = str(exc)
        if what.startswith("bad upgrade: b'HTTP/1.1 "):
            return "http " + what[len("bad upgrade: b'HTTP/1.1 "):][:3]
        if what.startswith("connection lost"):
            return what[len("connection "):]
    return type(exc).__name__


def source(slot: int) -> int:
    """The source address index (:func:`bench.loadgen.client_source`) of client ``slot``:
    every client its own address up to 64,262 of them, then two to an address."""
    return slot % loadgen.MAX_CLIENT_SOURCES


class FleetClient(loadgen.WsClient):
    """One websocket client of the fleet; tells the fleet of pings, broadcasts and its loss."""

    def __init__(self, fleet: Fleet, slot: int) -> None:
        super().__init__(fleet.run, source(slot))
        self.fleet = fleet
        self.slot = slot
        self.pid = 0
        self.last_ping = 0.0

    def on_text(self, p: bytes) -> None:
        if p[:1] == b"2":
            self.fleet.pinged(self)
        elif p[:1] == b"0" and not self.fleet.ping_interval:
            self.fleet.ping_interval = json.loads(p[1:]).get("pingInterval", 25000) / 1000.0
        super().on_text(p)

    def on_event(self, p: bytes) -> None:
        if p.startswith(b'42["bcast"'):
            data = json.loads(p[2:])[1]
            self.fleet.delivered(data["seq"], loadgen.now() - data["ts"])

    def lost(self) -> None:
        self.fleet.lost(self)


class Fleet:
    """The clients of one load process: slots ``share, share + shares, …`` below ``clients``."""

    def __init__(self, args: Any, share: int, shares: int) -> None:
        self.loop = asyncio.get_running_loop()
        self.run = loadgen.Run(args, self.loop)
        self.slots = list(range(share, args.clients, shares))
        self.live: dict[int, FleetClient] = {}
        self.gate = asyncio.Semaphore(args.connect_concurrency)
        self.ping_interval = 0.0
        self.deliveries: dict[int, array] = {}
        self.tasks: set[asyncio.Task] = set()
        self.closing = False
        self.mark()

    def mark(self) -> None:
        """Start a new window of counters."""
        self.since = loadgen.now()
        self.drops: list[tuple[int, int, float]] = []  # (slot, pid, when) of each client lost
        self.back: list[tuple[float, int]] = []  # (when, slot) of each reconnect
        self.failures: dict[str, int] = {}  # failed connection attempts by failure_kind()
        self.pings = 0
        self.late_pings = 0
        self.max_ping_gap = 0.0
        self.connect_seconds: array = array("d")

    # -- events of the clients
    def pinged(self, client: FleetClient) -> None:
        t = loadgen.now()
        if client.last_ping:
            gap = t - client.last_ping
            self.max_ping_gap = max(self.max_ping_gap, gap)
            if self.ping_interval and gap > self.ping_interval + LATE_PING:
                self.late_pings += 1
        client.last_ping = t
        self.pings += 1

    def delivered(self, seq: int, latency: float) -> None:
        self.deliveries.setdefault(seq, array("d")).append(latency)

    def lost(self, client: FleetClient) -> None:
        if self.closing or self.live.get(client.slot) is not client:
            return
        del self.live[client.slot]
        self.drops.append((client.slot, client.pid, loadgen.now()))
        self._spawn(self.keep(client.slot, first_wait=backoff(0), gated=False))

    # -- connecting
    def _spawn(self, coro: Any) -> asyncio.Task:
        task = self.loop.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def attempt(self, slot: int) -> FleetClient:
        """One connection attempt of ``slot``: upgrade, namespace, join the room, whoami."""
        client = FleetClient(self, slot)
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                await loadgen.open_client(self.run, client)
                await client.call("join", ROOM)
                client.pid = (await client.call("whoami"))[0]
        except BaseException:
            client.closing = True
            if client.transport is not None:
                client.transport.abort()
            raise
        return client

    async def keep(self, slot: int, first_wait: float = 0.0, gated: bool = True) -> None:
        """Connect ``slot`` and retry with :func:`backoff` until it is connected (the
        initial connects go ``--connect-concurrency`` at a time; reconnects all at once)."""
        await asyncio.sleep(first_wait)
        attempt = 0
        while not self.closing:
            t0 = loadgen.now()
            try:
                if gated:
                    async with self.gate:
                        client = await self.attempt(slot)
                else:
                    client = await self.attempt(slot)
            except (OSError, loadgen.ProtocolError, TimeoutError, ValueError) as exc:
                kind = failure_kind(exc)
                self.failures[kind] = self.failures.get(kind, 0) + 1
                await asyncio.sleep(backoff(attempt))
                attempt += 1
                continue
            t = loadgen.now()
            self.connect_seconds.append(t - t0)
            self.live[slot] = client
            if not gated:
                self.back.append((t, slot))
            return

    async def connect(self, upto: int, deadline: float, start: int = 0) -> dict[str, Any]:
        """Connect this fleet's slots from ``start`` below ``upto`` that are not connected
        yet (a ``start`` past the slots connected before: newcomers, each from an address
        of its own, while lost clients reconnect on their own); ``connected``: how many of
        them are."""
        t0 = loadgen.now()
        todo = [s for s in self.slots if start <= s < upto and s not in self.live]
        tasks = [self._spawn(self.keep(s)) for s in todo]
        if tasks:
            await asyncio.wait(tasks, timeout=max(0.0, deadline - t0))
        for task in tasks:
            task.cancel()
        gc.collect()
        gc.freeze()
        return {"live": len(self.live), "seconds": loadgen.now() - t0,
                "connected": sum(1 for s in todo if s in self.live)}

    # -- the orchestrator's view
    def stats(self) -> dict[str, Any]:
        """The counters since the last :meth:`mark`."""
        pids: dict[int, int] = {}
        for client in self.live.values():
            pids[client.pid] = pids.get(client.pid, 0) + 1
        return {"live": len(self.live), "pids": pids, "drops": self.drops, "back": self.back,
                "failures": self.failures, "pings": self.pings, "late_pings": self.late_pings,
                "max_ping_gap": self.max_ping_gap, "ping_interval": self.ping_interval,
                "connect_seconds": self.connect_seconds.tobytes(), "since": self.since}

    def send(self, seq: int) -> float | None:
        """Emit one ``bcast`` to :data:`ROOM` from one client of this fleet; when it went,
        or None when none of its clients is connected."""
        client = next(iter(self.live.values()), None)
        if client is None:
            return None
        ts = loadgen.now()
        client.send_text(b'42["bcast",{"room":"%s","ts":%r,"seq":%d}]' % (ROOM.encode(), ts, seq))
        return ts

    async def wait_deliveries(self, seq: int, timeout: float) -> bytes:
        """The latencies of broadcast ``seq`` once every live client has it, or ``timeout``."""
        deadline = loadgen.now() + timeout
        while loadgen.now() < deadline and len(self.deliveries.get(seq, ())) < len(self.live):
            await asyncio.sleep(0.05)
        return self.deliveries.pop(seq, array("d")).tobytes()

    async def close(self) -> None:
        self.closing = True
        for task in list(self.tasks):
            task.cancel()
        for client in list(self.live.values()):
            client.close()
        await asyncio.sleep(0.2)

    async def command(self, msg: tuple) -> Any:
        """Carry out one command of the orchestrator; its answer."""
        name, *rest = msg
        if name == "connect":
            return await self.connect(*rest)
        if name == "stats":
            return self.stats()
        if name == "mark":
            self.mark()
            return None
        if name == "send":
            return self.send(*rest)
        if name == "deliveries":
            return await self.wait_deliveries(*rest)
        if name == "close":
            await self.close()
            return None
        raise ValueError(f"unknown command {name!r}")


async def serve(args: Any, share: int, shares: int, conn: Connection) -> None:
    """Take the orchestrator's commands on ``conn`` until ``close`` (or its end); a ``close``
    that comes while a command runs cancels that command (which then answers nothing)."""
    fleet = Fleet(args, share, shares)
    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue = asyncio.Queue()
    running: list[asyncio.Task] = []

    def readable() -> None:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            msg = ("close",)
        if msg[0] == "close":
            for task in running:
                task.cancel()
        inbox.put_nowait(msg)

    loop.add_reader(conn.fileno(), readable)
    while True:
        msg = await inbox.get()
        running[:] = [loop.create_task(fleet.command(msg))]
        try:
            answer = await running[0]
        except asyncio.CancelledError:
            continue
        try:
            conn.send(answer)
        except OSError:
            return
        if msg[0] == "close":
            loop.remove_reader(conn.fileno())
            return


def main(args: Any, share: int, shares: int, conn: Connection) -> None:
    """The body of one forked fleet process."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    loadgen.raise_nofile()
    try:
        asyncio.run(serve(args, share, shares, conn))
    finally:
        conn.close()


class Fleets:
    """The orchestrator's end: ``procs`` forked fleet processes that split ``args.clients``.

    Every command goes to each process and waits for every answer (:meth:`ask`), bounded
    by ``timeout`` seconds; :meth:`stop` closes them and joins them by PID.
    """

    def __init__(self, args: Any, procs: int) -> None:
        ctx = multiprocessing.get_context("fork")
        self.conns: list[Connection] = []
        self.procs: list[multiprocessing.process.BaseProcess] = []
        for share in range(procs):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=main, args=(args, share, procs, child), daemon=True)
            proc.start()
            child.close()
            self.conns.append(parent)
            self.procs.append(proc)

    def ask(self, msg: tuple, timeout: float, only: int | None = None) -> list[Any]:
        """Send ``msg`` to every process (or process ``only``); their answers, in order."""
        conns = self.conns if only is None else [self.conns[only]]
        for conn in conns:
            conn.send(msg)
        deadline = time.monotonic() + timeout
        answers = []
        for conn in conns:
            if not conn.poll(max(0.0, deadline - time.monotonic())):
                raise RuntimeError(f"a fleet process did not answer {msg[0]!r} in {timeout:.0f} s")
            answers.append(conn.recv())
        return answers

    def stop(self) -> None:
        """Close every client, then end the processes (SIGKILL by PID after a grace time)."""
        try:
            self.ask(("close",), 30)
        except (RuntimeError, OSError, EOFError):
            pass
        deadline = time.monotonic() + 10
        for proc in self.procs:
            proc.join(max(0.1, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
                proc.join(5)
