"""Private brokers for the tests (a redis-server, a Sentinel set, a RabbitMQ node), and a
measured stream of cross-worker broadcasts.

Every process here is started on a free loopback port and stopped (or killed) by PID.
:func:`broadcast_stream` shouts a numbered broadcast from a client of one worker to a
room whose members sit on the other worker, breaks something meanwhile, and counts
what a user would notice: the gap, the lost broadcasts, the clients disconnected.
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable

import psutil
import redis

from tests.support.clients import connected, source_address
from tests.support.orphans import SESSION_PIDS
from tests.support.ports import free_port
from tests.support.waiting import wait_for


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


class SentinelSet:
    """A Redis primary, one replica and three Sentinels watching them, on loopback.

    Short ``down-after-milliseconds`` and ``failover-timeout`` make a failover take
    seconds. :attr:`url` is the cluster's ``redis+sentinel://`` adapter URL.
    """

    SERVICE = "sticky"

    def __init__(self, workdir: Path, down_after_ms: int = 1000, failover_ms: int = 3000) -> None:
        port = free_port()
        self.primary = RedisNode(workdir / "primary", plain_args(port), port=port)
        port = free_port()
        self.replica = RedisNode(workdir / "replica", plain_args(
            port, "--replicaof", "127.0.0.1", str(self.primary.port)), port=port)
        self.sentinels = []
        for index in range(3):
            port, folder = free_port(), workdir / f"sentinel{index}"
            folder.mkdir(parents=True)
            conf = folder / "sentinel.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {folder}\nlogfile \"\"\n"
                f"sentinel monitor {self.SERVICE} 127.0.0.1 {self.primary.port} 2\n"
                f"sentinel down-after-milliseconds {self.SERVICE} {down_after_ms}\n"
                f"sentinel failover-timeout {self.SERVICE} {failover_ms}\n"
                f"sentinel parallel-syncs {self.SERVICE} 1\n")
            self.sentinels.append(RedisNode(folder, [str(conf), "--sentinel"], port=port))
        hosts = ",".join(f"127.0.0.1:{node.port}" for node in self.sentinels)
        self.url = f"redis+sentinel://{hosts}/0/{self.SERVICE}"

    def start(self) -> None:
        for node in (self.primary, self.replica, *self.sentinels):
            node.start()
        wait_for(self._watched, 30, interval=0.2,
                 what="every Sentinel to know the replica and the other Sentinels")

    def stop(self) -> None:
        for node in (*self.sentinels, self.replica, self.primary):
            node.stop()

    def primary_port(self) -> int:
        with contextlib.closing(self.sentinels[0].client()) as client:
            return int(client.sentinel_get_master_addr_by_name(self.SERVICE)[1])

    def _watched(self) -> bool:
        for node in self.sentinels:
            with contextlib.closing(node.client()) as client:
                state = client.sentinel_master(self.SERVICE)
            if int(state["num-other-sentinels"]) < 2 or int(state["num-slaves"]) < 1:
                return False
        with contextlib.closing(self.replica.client()) as client:
            return client.info("replication").get("master_link_status") == "up"


@dataclasses.dataclass
class StreamFigures:
    """What a broadcast stream across a fault measured."""

    sent_after_fault: int
    lost: int
    gap: float
    """Seconds from the first lost broadcast to the first one after it that arrived."""
    resumed: bool
    disconnects: int
    clients: int
    slowest_emit: float
    """Seconds the slowest broadcasting event took to answer its client after the fault."""
    slowest_emit_at: float
    """When that event was sent, in seconds after the fault began."""


async def broadcast_stream(url: str, fault: Callable[[], None], *, first_source: int,
                           clients: int = 10, interval: float = 0.1, max_seconds: float = 60,
                           resumed_after: int = 20) -> StreamFigures:
    """Shout numbered broadcasts across workers; run ``fault`` (in a thread) midway.

    The stream is bounded by ``max_seconds``; it ends once ``resumed_after`` broadcasts
    in a row arrived after the fault.
    """
    async with contextlib.AsyncExitStack() as stack:
        members = []
        disconnects = []
        for index in range(clients):
            client = await stack.enter_async_context(
                connected(url, source_address(first_source + index)))
            inbox: asyncio.Queue = asyncio.Queue()
            client.on("heard", inbox.put_nowait)
            client.on("disconnect", lambda *_args, i=index: disconnects.append(i))
            answer = await client.call("join", "stream", timeout=10)
            members.append((client, inbox, answer["pid"]))
        pids = {pid for *_rest, pid in members}
        assert len(pids) >= 2, f"the clients all landed on one worker: {pids}"
        shouter, _inbox, shouter_pid = members[0]
        listener = next(inbox for _c, inbox, pid in members if pid != shouter_pid)
        heard: dict[int, float] = {}

        async def drain() -> None:
            while True:
                message = await listener.get()
                heard.setdefault(int(message["message"]), time.monotonic())

        drainer = asyncio.create_task(drain())
        sent: dict[int, float] = {}
        emit_times: list[tuple[float, float]] = []
        """(seconds the event took to answer, when it was sent)"""
        seq = 0

        async def shout() -> None:
            nonlocal seq
            seq += 1
            sent[seq] = time.monotonic()
            await shouter.call("shout", {"room": "stream", "message": str(seq)}, timeout=60)
            emit_times.append((time.monotonic() - sent[seq], sent[seq]))
            await asyncio.sleep(interval)

        for _ in range(100):  # the other worker subscribes in the background after its boot
            await shout()
            if heard:
                break
        warm = seq
        for _ in range(10):  # flowing before the fault
            await shout()
        for _ in range(100):
            if all(n in heard for n in range(warm + 1, seq + 1)):
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError(f"broadcasts did not flow before the fault: {sorted(heard)}")
        first_after = seq + 1
        emit_times.clear()
        fault_at = time.monotonic()
        faulting = asyncio.create_task(asyncio.to_thread(fault))
        deadline = fault_at + max_seconds

        def heard_after() -> int:
            return sum(1 for n in heard if n >= first_after)

        while time.monotonic() < deadline and heard_after() < resumed_after:
            await shout()
        await faulting
        for _ in range(5):
            await shout()
        await asyncio.sleep(2)  # stragglers
        drainer.cancel()
        arrived = [n for n in range(first_after, seq + 1) if n in heard]
        lost = [n for n in range(first_after, seq + 1) if n not in heard]
        later = [n for n in arrived if lost and n > lost[0]]
        gap = (sent[later[0]] - sent[lost[0]]) if later else 0.0 if not lost else float("inf")
        return StreamFigures(sent_after_fault=seq - first_after + 1,
                             lost=len(lost), gap=gap,
                             resumed=all(n in heard for n in range(seq - 4, seq + 1)),
                             disconnects=len(disconnects), clients=clients,
                             slowest_emit=max(emit_times)[0],
                             slowest_emit_at=max(emit_times)[1] - fault_at)


RABBITMQ_SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"
"""The node's own start script (``/usr/sbin/rabbitmq-server`` wraps it in ``su``)."""


class RabbitNode:
    """A private RabbitMQ node: its own name, AMQP and distribution ports, and data dir.

    Run as the ``rabbitmq`` user when the tests run as root (as the packaged service
    does); stopped by the PID of its Erlang VM, which shuts down cleanly on SIGTERM.
    """

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}//"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 120) -> "RabbitNode":
        from cluster.setup.broker_check import probe

        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "enabled_plugins").write_text("[].\n")
        user = "rabbitmq" if os.geteuid() == 0 else None
        if user:
            for path in (self.workdir, *self.workdir.rglob("*")):
                shutil.chown(path, user)
        env = {**os.environ, "HOME": str(self.workdir),
               "RABBITMQ_NODENAME": f"sticky{self.port}@localhost",
               "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
               "RABBITMQ_NODE_PORT": str(self.port),
               "RABBITMQ_DIST_PORT": str(free_port()),
               "RABBITMQ_MNESIA_BASE": str(self.workdir / "mnesia"),
               "RABBITMQ_LOG_BASE": str(self.workdir / "log"),
               "RABBITMQ_LOGS": "-",
               "RABBITMQ_PID_FILE": str(self.workdir / "pid"),
               "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.workdir / "enabled_plugins"),
               "RABBITMQ_FEATURE_FLAGS_FILE": str(self.workdir / "feature_flags"),
               "RABBITMQ_CONFIG_FILE": str(self.workdir / "rabbitmq"),
               "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.workdir / "advanced.config")}
        with open(self.workdir / "node.log", "wb") as log:
            self.proc = subprocess.Popen([RABBITMQ_SERVER], env=env, user=user, cwd=self.workdir,
                                         stdout=log, stderr=subprocess.STDOUT)
        SESSION_PIDS.add(self.proc.pid)
        try:
            wait_for(lambda: self.proc.poll() is not None or probe(self.url, "probe", 2) is None,
                     timeout, interval=0.5, what="the private RabbitMQ node to answer")
            if self.proc.poll() is not None:
                raise AssertionError(f"rabbitmq-server exited {self.proc.returncode}")
        except AssertionError:
            self.stop()
            raise
        return self

    def kill(self) -> None:
        """SIGKILL the node's Erlang VM: it dies as in a crash, its connections reset."""
        self.stop(signal.SIGKILL)

    def stop(self, signum: int = signal.SIGTERM) -> None:
        if self.proc is None:
            return
        try:
            os.kill(int((self.workdir / "pid").read_text().split()[0]), signum)
        except (OSError, ValueError, IndexError):
            self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            for child in psutil.Process(self.proc.pid).children(recursive=True):
                child.kill()
            self.proc.kill()
            self.proc.wait(10)
        SESSION_PIDS.discard(self.proc.pid)
        self.proc = None
