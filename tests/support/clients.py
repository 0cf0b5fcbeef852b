"""Real Socket.IO clients for the tests, each from its own loopback source address."""
from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import itertools
import time
from typing import AsyncIterator

import aiohttp
import socketio


def run(coro, timeout: float = 120):
    """Run ``coro`` to its end in a new event loop; fail it after ``timeout`` seconds."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


def source_address(index: int) -> str:
    """A distinct loopback address per client: 127.0.1.1, 127.0.1.2, … (never 127.0.0.1)."""
    return f"127.0.{1 + index // 250}.{1 + index % 250}"


@contextlib.asynccontextmanager
async def connected(url: str, source: str, *, transports: list[str] | None = None,
                    namespaces: list[str] | None = None, handlers: dict | None = None,
                    **kwargs) -> AsyncIterator[socketio.AsyncClient]:
    """An AsyncClient connected to ``url`` (``namespaces``, default ``/``) from ``source``.

    Polling and the websocket both go out from ``source`` (aiohttp ``local_addr``).
    ``handlers`` (event name -> handler, on each of ``namespaces``) are in place before the
    connection, so that an event the server sends at connect is not missed.
    """
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(source, 0)))
    client = socketio.AsyncClient(http_session=session, reconnection=False, **kwargs)
    for event, handler in (handlers or {}).items():
        for namespace in namespaces or ["/"]:
            client.on(event, handler, namespace=namespace)
    try:
        await client.connect(url, transports=transports or ["polling", "websocket"],
                             namespaces=namespaces, wait_timeout=10)
        yield client
    finally:
        with contextlib.suppress(Exception):
            await disconnect(client)
        await session.close()


async def disconnect(client: socketio.AsyncClient) -> None:
    """``client.disconnect()``, without waiting out a long poll that nobody will answer.

    python-engineio's asyncio server leaves a long poll pending when the session closes
    (its eventlet and gevent twin answers it), so against the asyncio runtimes a polling
    client's ``disconnect()`` waits for that GET's own time-out: 30 s. The close is sent
    all the same: the client's write loop posts it and ends; a GET still pending a second
    later is ended by closing the client's HTTP session.
    """
    writer = client.eio.write_loop_task
    closing = asyncio.ensure_future(client.disconnect())
    if client.transport() == "polling" and writer is not None:
        await writer
        done, _pending = await asyncio.wait({closing}, timeout=1)
        if not done:
            await client.eio.http.close()
    await closing


async def wait_upgraded(client: socketio.AsyncClient, timeout: float = 10) -> None:
    """Wait until the client's Engine.IO transport is the websocket."""
    deadline = asyncio.get_running_loop().time() + timeout
    while client.transport() != "websocket":
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("the client never upgraded to websocket")
        await asyncio.sleep(0.02)


EXTRA_CLIENTS = 8
"""Clients :func:`room_broadcast_reaches_every_worker` may add, one a heartbeat apart."""


async def room_broadcast_reaches_every_worker(urls: list[str], clients_per_url: int = 12,
                                              workers: int = 0):
    """Connect clients to ``urls`` (round robin), join a room, shout from one client.

    Returns (pids of the listeners, pids that heard the shout, shouter's pid). While the
    listeners are on fewer than ``workers`` workers, up to :data:`EXTRA_CLIENTS` more connect.
    """
    heard: dict[int, asyncio.Future] = {}
    async with contextlib.AsyncExitStack() as stack:
        clients = []
        wanted = clients_per_url * len(urls)
        for index in range(wanted + EXTRA_CLIENTS):
            if index >= wanted:
                if len({pid for _client, pid in clients}) >= workers:
                    break
                # A worker passed over is late (a loaded machine delayed its heartbeat):
                # the next heartbeat makes it a candidate again.
                await asyncio.sleep(LATE_RECOVERY)
            client = await stack.enter_async_context(
                connected(urls[index % len(urls)], source_address(200 + index)))
            future = asyncio.get_running_loop().create_future()
            heard[index] = future
            client.on("heard", lambda data, f=future: f.done() or f.set_result(data))
            answer = await client.call("join", "room-1", timeout=10)
            clients.append((client, answer["pid"]))
        shouter, shouter_pid = clients[0]
        assert await shouter.call("shout", {"room": "room-1", "message": "hello"}, timeout=10) == "ok"
        results = await asyncio.wait_for(asyncio.gather(*heard.values()), 10)
        assert all(data["message"] == "hello" for data in results)
        return {pid for _client, pid in clients}, {data["from_pid"] for data in results}, shouter_pid


async def ask(url: str, index: int, event: str = "whoami") -> dict:
    """Connect from ``source_address(index)``, call ``event``, disconnect: the answer."""
    async with connected(url, source_address(index)) as client:
        return await client.call(event, timeout=10)


@dataclasses.dataclass
class Attempt:
    """One connection attempt of a :class:`Stream`."""

    started: float
    pid: int | None
    error: str | None = None


class Stream:
    """A steady stream of new clients: each connects, gets one ack, disconnects.

    Bounded in count and in time. ``attempts`` records every one.
    """

    def __init__(self, url: str, first_index: int, concurrency: int = 4,
                 limit: int = 4000, seconds: float = 60, attempt_timeout: float = 15) -> None:
        self.url = url
        self.attempts: list[Attempt] = []
        self._indexes = itertools.cycle(range(first_index, first_index + 200))
        self._concurrency = concurrency
        self._limit = limit
        self._seconds = seconds
        self._attempt_timeout = attempt_timeout
        self._stop = asyncio.Event()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(asyncio.gather(
            *(self._one_by_one() for _ in range(self._concurrency))))

    async def stop(self) -> list[Attempt]:
        self._stop.set()
        await self._task
        return self.attempts

    def between(self, start: float, end: float) -> list[Attempt]:
        return [a for a in self.attempts if start <= a.started < end]

    async def _one_by_one(self) -> None:
        deadline = time.monotonic() + self._seconds
        while not self._stop.is_set() and len(self.attempts) < self._limit \
                and time.monotonic() < deadline:
            started = time.monotonic()
            try:
                answer = await asyncio.wait_for(ask(self.url, next(self._indexes)),
                                                self._attempt_timeout)
                self.attempts.append(Attempt(started, answer["pid"]))
            except Exception as exc:  # noqa: BLE001 - every failure is a finding
                self.attempts.append(Attempt(started, None, f"{type(exc).__name__}: {exc}"))


@dataclasses.dataclass
class Member:
    """One client of a :func:`crowd`, and when its session ended (monotonic seconds)."""

    client: socketio.AsyncClient
    index: int
    ended_at: float | None = None


@contextlib.asynccontextmanager
async def crowd(url: str, first_index: int, count: int,
                concurrency: int = 20) -> AsyncIterator[list[Member]]:
    """``count`` clients on websocket (the polling handshake, then the upgrade), each from its
    own address (``source_address(first_index + i)``), connected ``concurrency`` at a time.
    Reconnection is off: each notes when its session ended (:attr:`Member.ended_at`)."""
    members: list[Member] = []
    async with contextlib.AsyncExitStack() as stack:
        for start in range(first_index, first_index + count, concurrency):
            batch = range(start, min(start + concurrency, first_index + count))
            joined = await asyncio.gather(*(_join(stack, url, index) for index in batch),
                                          return_exceptions=True)
            members += [m for m in joined if isinstance(m, Member)]
            failed = [m for m in joined if not isinstance(m, Member)]
            if failed:
                raise failed[0]
        yield members


async def _join(stack: contextlib.AsyncExitStack, url: str, index: int) -> Member:
    member: Member | None = None

    def ended(*_reason: object) -> None:
        if member is not None and member.ended_at is None:
            member.ended_at = time.monotonic()

    client = await stack.enter_async_context(
        connected(url, source_address(index), handlers={"disconnect": ended}))
    member = Member(client, index)
    await wait_upgraded(client)
    return member


# ------------------------------------------------- peers of the unicast app (tells, broadcasts)

UNICAST_APP = "tests.apps.unicast:sio"
CLIENTS = 12
"""Clients :func:`peers` connects (to a three-worker cluster)."""
MORE_CLIENTS = 20
"""Clients :func:`peers` may connect in all, while a worker has fewer than two of them
(placement follows the workers' last heartbeats, which a loaded machine delays); the
first sources of two calls of :func:`peers` are this far apart."""
LATE_RECOVERY = 1.0
"""Seconds :func:`peers` waits before each extra client: a worker's heartbeat interval."""


@dataclasses.dataclass
class Peer:
    """One connected client: its worker, its sid per namespace, what it received."""

    client: object
    pid: int
    sids: dict[str, str]
    inbox: dict[tuple[str, str], asyncio.Queue]

    def got(self, event: str, namespace: str = "/") -> asyncio.Queue:
        return self.inbox[(event, namespace)]


@contextlib.asynccontextmanager
async def peers(url: str, first_source: int, namespaces: tuple[str, ...] = ("/",)):
    """CLIENTS connected clients (more, up to MORE_CLIENTS, until each of the three workers
    has two), each from its own address, grouped by worker pid."""
    async with contextlib.AsyncExitStack() as stack:
        everyone = []

        def short_of_two() -> bool:
            pids = collections.Counter(peer.pid for peer in everyone)
            return len(pids) < 3 or min(pids.values()) < 2

        for index in range(MORE_CLIENTS):
            if index >= CLIENTS:
                if not short_of_two():
                    break
                # A worker passed over is late (a loaded machine delayed its heartbeat):
                # the next heartbeat makes it a candidate again.
                await asyncio.sleep(LATE_RECOVERY)
            client = await stack.enter_async_context(
                connected(url, source_address(first_source + index), namespaces=list(namespaces)))
            inbox = collections.defaultdict(asyncio.Queue)
            for namespace in namespaces:
                for event in ("told", "heard"):
                    client.on(event, inbox[(event, namespace)].put_nowait, namespace=namespace)
            answers = {ns: await client.call("whoami", namespace=ns, timeout=10)
                       for ns in namespaces}
            pid = answers["/"]["pid"] if "/" in answers else next(iter(answers.values()))["pid"]
            everyone.append(Peer(client, pid, {ns: a["sid"] for ns, a in answers.items()}, inbox))
        by_pid = collections.defaultdict(list)
        for peer in everyone:
            by_pid[peer.pid].append(peer)
        assert len(by_pid) == 3, {pid: len(group) for pid, group in by_pid.items()}
        assert all(len(group) >= 2 for group in by_pid.values())
        yield everyone, list(by_pid.values())


async def tell(sender: Peer, to: str, message: str, namespace: str = "/",
               in_namespace: str | None = None) -> None:
    data = {"to": to, "message": message}
    if in_namespace is not None:
        data["namespace"] = in_namespace
    assert await sender.client.call("tell", data, namespace=namespace, timeout=10) == "ok"


async def received(queue: asyncio.Queue, until: str) -> list[str]:
    """The messages that arrive in ``queue`` up to and including ``until``."""
    messages = []
    while not messages or messages[-1] != until:
        messages.append((await asyncio.wait_for(queue.get(), 10))["message"])
    return messages
