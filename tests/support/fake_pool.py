"""A worker pool with fakes all around: a clock that moves when told, processes that are
pids and channel ends, a selector that records what is watched. No fork, no sleep.

Used by the unit tests of the pool, the relay, recycling and the hand-back placement
(tests/unit/cluster/).
"""
from __future__ import annotations

import os
import selectors
import socket

from cluster.pool.pool import WorkerPool
from cluster.pool.pool_wiring import PoolHooks
from cluster.pool.worker import State, Worker
from cluster.protocol import frames
from cluster.protocol.frames import Kind
from cluster.setup.config import make_settings

TIMEOUT = 20.0
HEARTBEAT = 1.0  # as Settings derives it from TIMEOUT
GRACEFUL = 10.0
BOOT_TIMEOUT = 30.0
CPUS = 2
"""The fake machine's CPUs: 4 workers boot at once."""
SPREAD = 4.0
READ, WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE


def exited(code: int) -> int:
    """The wait status of a process that exited with ``code``."""
    return code << 8


def killed_by(signum: int) -> int:
    """The wait status of a process killed by ``signum``."""
    return signum


class Clock:
    """Monotonic seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Processes:
    """Fake worker processes: the pool's starter, reaper and killer."""

    def __init__(self) -> None:
        self.next_pid = 100
        self.ends: dict[int, socket.socket] = {}
        """pid -> the worker's end of its channel."""
        self.dead: list[tuple[int, int]] = []
        self.signals: list[tuple[int, int]] = []
        self.started: list[tuple[int, int]] = []
        """(slot, tag) of every start."""
        self.warm: list[bool] = []
        """Whether each start (in :attr:`started`'s order) may fork from the template."""
        self.rss: dict[int, int] = {}
        """pid -> its resident memory in bytes, as the test says (unknown: None)."""

    def start(self, slot: int, tag: int, warm: bool = True) -> tuple[int, socket.socket]:
        master_end, worker_end = frames.socket_pair()
        master_end.setblocking(False)
        worker_end.setblocking(False)
        self.next_pid += 1
        self.ends[self.next_pid] = worker_end
        self.started.append((slot, tag))
        self.warm.append(warm)
        return self.next_pid, master_end

    def reap(self) -> list[tuple[int, int]]:
        dead, self.dead = self.dead, []
        return dead

    def memory(self, pid: int) -> int | None:
        return self.rss.get(pid)

    def kill(self, pid: int, signum: int) -> None:
        self.signals.append((pid, signum))

    def read_all(self, pid: int) -> list[bytes]:
        """The packets the master sent ``pid`` since the last read (fds closed)."""
        packets = []
        while True:
            try:
                packet, fd = frames.receive_packet(self.ends[pid])
            except BlockingIOError:
                return packets
            if fd is not None:
                os.close(fd)
            packets.append(packet)

    def received(self, pid: int) -> list[Kind]:
        """The kinds of the messages the master sent ``pid`` since the last read."""
        return [Kind(packet[0]) for packet in self.read_all(pid)]

    def close(self) -> None:
        for end in self.ends.values():
            end.close()


class Watcher:
    """The selector's part: which channels are watched, for what."""

    def __init__(self) -> None:
        self.watched: dict[socket.socket, tuple[int, object]] = {}

    def watch(self, sock, events, on_event) -> None:
        self.watched[sock] = (events, on_event)

    def unwatch(self, sock) -> None:
        self.watched.pop(sock, None)

    def events(self, worker: Worker) -> int | None:
        entry = self.watched.get(worker.sock)
        return entry[0] if entry else None

    def wake(self, worker: Worker, mask: int = READ) -> None:
        _events, on_event = self.watched[worker.sock]
        on_event(worker.sock, mask)


class World:
    """A pool of ``workers`` slots with fakes all around, and the master's part of the
    hooks: a halt stops the pool, as :meth:`cluster.master.Master._halt` does. ``options``
    are more of ``make_settings``'s, or other values than the fakes' own."""

    def __init__(self, workers: int = 2, **options: object) -> None:
        self.clock = Clock()
        self.processes = Processes()
        self.watcher = Watcher()
        self.heard: list[object] = []
        self.halted: str | None = None
        self.stranded: list[tuple[bytes, int]] = []
        options = {"timeout": TIMEOUT, "graceful_timeout": GRACEFUL,
                   "boot_timeout": BOOT_TIMEOUT, "drain_spread": SPREAD, **options}
        settings = make_settings("tests.apps.chat:sio", workers=workers, **options)
        hooks = PoolHooks(roll_ended=lambda: self.heard.append("roll ended"),
                          halt=self._halt,
                          stranded=lambda packet, fd: self.stranded.append((packet, fd)),
                          relay=lambda worker, kind, value: self.heard.append((kind, value)))
        self.pool = WorkerPool(settings, self.processes, hooks, cpus=CPUS,
                               kill=self.processes.kill, clock=self.clock)
        self.pool.attach(self.watcher)

    def _halt(self, reason: str) -> None:
        self.halted = reason
        self.pool.stop(graceful=False)

    def say(self, worker: Worker, kind: Kind, payload: bytes = b"") -> None:
        """``worker`` sends a message; the loop wakes the pool for it."""
        for packet in frames.packets(kind, payload):
            self.processes.ends[worker.pid].send(packet)
        self.watcher.wake(worker)

    def ready(self, *workers: Worker) -> None:
        for worker in workers:
            self.say(worker, Kind.READY)

    def beat(self, worker: Worker, sessions: int = 0, connections: int = 0,
             full: int = 0) -> None:
        self.say(worker, Kind.HEARTBEAT, frames.Heartbeat(sessions, connections, full).encode())

    def exit(self, worker: Worker, status: int = exited(0)) -> None:
        """``worker``'s process ends; CHLD reaps it."""
        self.processes.ends[worker.pid].close()
        self.processes.dead.append((worker.pid, status))
        self.pool.reap()

    def tick(self, seconds: float = 0.0) -> None:
        """Time passes; the loop's tick reconciles and scans the heartbeats."""
        self.clock.now += seconds
        self.pool.check_heartbeats(self.clock.now)
        self.pool.reconcile(self.clock.now)
        self.pool.check_recycling(self.clock.now)

    def slot(self, slot: int) -> list[Worker]:
        """The live workers of ``slot``, oldest first."""
        return sorted(self.pool.in_slot(slot), key=lambda w: w.pid)

    def booting(self, slot: int) -> Worker:
        (worker,) = [w for w in self.pool.in_slot(slot) if w.state is State.BOOTING]
        return worker

    def states(self) -> dict[int, list[str]]:
        """slot -> the states of its workers, oldest first."""
        return {slot: [w.state.value for w in self.slot(slot)]
                for slot in sorted({w.slot for w in self.pool.by_pid.values()})}

    def close(self) -> None:
        self.pool.close_all_in_child()  # closes the master's ends
        self.processes.close()
        for _packet, fd in self.stranded:
            os.close(fd)


def serving_world(world: World) -> list[Worker]:
    """Start the pool and make every worker ready; its serving workers by slot."""
    world.pool.start()
    world.ready(*world.pool.by_pid.values())
    return [world.pool.serving[slot] for slot in range(world.pool.size)]
