"""The worker processes: fork them, talk to them, reap them.

A :class:`Worker` is the master's view of one worker process: its slot, its tag, the
master's end of its channel and what is queued to be sent on it. Sends never block
the master: a full channel queues a bounded number of packets, and past that the
caller is told so (a hand-off then goes to another slot, a relay message is dropped).
"""
from __future__ import annotations

import collections
import dataclasses
import enum
import importlib
import logging
import os
import signal
import socket
import sys
import time
import traceback
from typing import Callable

from protocol import frames
from protocol.frames import Kind
from protocol.sids import TAG_LIMIT
from protocol.spec import RUNTIMES, WorkerSpec

from .privileges import Identity
from .proctitle import set_title

log = logging.getLogger("sticky_cluster.master")

OUTBOX_LIMIT = 512
"""Packets queued for one worker while its channel is full; past that, sends fail."""

BOOT_ERROR = 3
"""Exit code of a worker that could not boot."""

IGNORED_IN_WORKERS = (signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGUSR1,
                      signal.SIGUSR2, signal.SIGTTIN, signal.SIGTTOU, signal.SIGWINCH)
"""Signals a worker ignores: the master drives workers through their channel."""


class State(enum.Enum):
    """Where a worker is in its life."""

    BOOTING = "booting"  #: forked, not ready yet
    SERVING = "serving"  #: ready and routed to
    DRAINING = "draining"  #: no new clients; its sessions go on until they end


@dataclasses.dataclass(eq=False)
class Worker:
    """The master's record of one worker process."""

    pid: int
    slot: int
    tag: int
    sock: socket.socket
    state: State = State.BOOTING
    born: float = dataclasses.field(default_factory=time.monotonic)
    last_seen: float = dataclasses.field(default_factory=time.monotonic)
    sessions: int = 0
    """Engine.IO sessions, as of the last heartbeat."""
    connections: int = 0
    """Connections open or waiting to be served, as of the last heartbeat."""
    placed: int = 0
    """New clients placed here since the last heartbeat."""
    full: bool = False
    """At ``--worker-connections`` at the last heartbeat: new clients go elsewhere."""
    late: bool = False
    """Missed its heartbeats (hung, stopped, busy): new clients go elsewhere."""
    drain_deadline: float | None = None
    killed: bool = False
    """SIGKILL was sent; the worker is as good as gone."""
    boot_error: str | None = None
    """What the worker said when it could not boot."""
    outbox: collections.deque = dataclasses.field(default_factory=collections.deque)
    reassembler: frames.Reassembler = dataclasses.field(default_factory=frames.Reassembler)
    broken: bool = False
    """The channel failed: the worker is gone; nothing more is sent to it."""

    def __str__(self) -> str:
        return f"worker {self.pid} (slot {self.slot})"

    def send(self, packet: bytes, client: int | None = None) -> bool:
        """Send (or queue) one packet, with a client socket fd to hand off if given.

        Returns False, sending nothing, when the outbox is full or the channel broken.
        A handed-off client fd is closed here once it is sent; the worker has its own copy.
        """
        if self.broken:
            return False
        if self.outbox:
            if len(self.outbox) >= OUTBOX_LIMIT:
                return False
            self.outbox.append((packet, client))
            return True
        try:
            frames.send_packet(self.sock, packet, client)
        except BlockingIOError:
            self.outbox.append((packet, client))
            return True
        except OSError:
            self.broken = True
            return False
        if client is not None:
            os.close(client)
        return True

    def flush(self) -> bool:
        """Send what the outbox holds; return True once it is empty."""
        while self.outbox:
            packet, client = self.outbox[0]
            try:
                frames.send_packet(self.sock, packet, client)
            except BlockingIOError:
                return False
            except OSError:  # the worker is gone: keep the hand-offs for forget() to re-route
                self.broken = True
                return True
            self.outbox.popleft()
            if client is not None:
                os.close(client)
        return True

    def discard_outbox(self) -> list[tuple[bytes, int]]:
        """Empty the outbox; return the hand-offs it still held: (packet, client fd)."""
        clients = [(packet, client) for packet, client in self.outbox if client is not None]
        self.outbox.clear()
        return clients


class Supervisor:
    """Forks workers and keeps the table of the live ones.

    :param spec_for: makes the :class:`WorkerSpec` of a new worker from (slot, tag).
    :param runtime: the name of the worker runtime (a key of :data:`protocol.spec.RUNTIMES`).
    :param forget_in_child: closes, in a new child, everything of the master's it
                            inherited (listeners, selector, other workers' channels).
    :param identity: the user and groups a new worker switches to before it loads the
                     app; None: it stays who the master is.
    """

    def __init__(self, spec_for: Callable[[int, int], WorkerSpec], runtime: str,
                 forget_in_child: Callable[[], None], identity: Identity | None = None) -> None:
        self._identity = identity
        self._spec_for = spec_for
        self.runtime = runtime
        """The worker runtime's name (resolved by the master's pre-flight check)."""
        self._forget_in_child = forget_in_child
        self._next_tag = 1
        self.by_pid: dict[int, Worker] = {}
        self.by_tag: dict[int, Worker] = {}
        self.serving: dict[int, Worker] = {}
        """slot -> the worker new clients of that slot go to."""

    def spawn(self, slot: int) -> Worker:
        """Fork a new worker for ``slot``; it is BOOTING until it reports ready."""
        tag = self._next_tag
        self._next_tag = self._next_tag % (TAG_LIMIT - 1) + 1
        master_end, worker_end = frames.socket_pair()
        spec = self._spec_for(slot, tag)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            master_end.close()
            self._become_worker(spec, worker_end)
        worker_end.close()
        master_end.setblocking(False)
        worker = Worker(pid=pid, slot=slot, tag=tag, sock=master_end)
        self.by_pid[pid] = worker
        self.by_tag[tag] = worker
        return worker

    def _become_worker(self, spec: WorkerSpec, sock: socket.socket) -> None:
        code = 0
        try:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            for signum in IGNORED_IN_WORKERS:
                signal.signal(signum, signal.SIG_IGN)
            self._forget_in_child()
            if self._identity is not None:
                self._identity.become()
            target = spec.target if isinstance(spec.target, str) else type(spec.target).__name__
            set_title(f"worker {spec.slot} {target}")
            importlib.import_module(RUNTIMES[self.runtime]).serve(spec, sock)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException as exc:  # noqa: BLE001 - the child must never return to the master's loop
            error = getattr(exc, "__module__", "").startswith("workers.") and str(exc)
            message = error or "".join(traceback.format_exception(exc)).rstrip()
            log.error("worker %d (slot %d) failed to boot: %s", os.getpid(), spec.slot, message)
            _report_boot_failure(sock, error or f"{type(exc).__name__}: {exc}")
            code = BOOT_ERROR
        finally:
            logging.shutdown()
            os._exit(code)

    def forget(self, worker: Worker) -> list[tuple[bytes, int]]:
        """Drop a dead worker from every table; return the hand-offs still queued for it."""
        self.by_pid.pop(worker.pid, None)
        if self.by_tag.get(worker.tag) is worker:
            del self.by_tag[worker.tag]
        if self.serving.get(worker.slot) is worker:
            del self.serving[worker.slot]
        clients = worker.discard_outbox()
        worker.sock.close()
        return clients

    def in_slot(self, slot: int) -> list[Worker]:
        """Every live worker of ``slot``, whatever its state."""
        return [worker for worker in self.by_pid.values() if worker.slot == slot]

    def close_all_in_child(self) -> None:
        """In a new child: close the master's ends of every other worker's channel."""
        for worker in self.by_pid.values():
            for _packet, client in worker.discard_outbox():
                os.close(client)
            worker.sock.close()

    def signal_all(self, signum: int) -> None:
        """Send ``signum`` to every live worker."""
        for pid in list(self.by_pid):
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    def reap(self) -> list[tuple[Worker, int]]:
        """Collect every worker that has exited: (worker, wait status) pairs."""
        dead = []
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            worker = self.by_pid.get(pid)
            if worker is not None:
                dead.append((worker, status))
        return dead

    def send_to_all(self, kind: Kind, payload: bytes | memoryview,
                    skip: Worker | None = None) -> int:
        """Send one message to every worker past booting, but ``skip``; return drops."""
        packets = frames.packets(kind, payload)
        dropped = 0
        for worker in self.by_pid.values():
            if worker is skip or worker.state is State.BOOTING:
                continue
            dropped += not _send_packets(worker, packets)
        return dropped

    def send_to(self, worker: Worker, kind: Kind, payload: bytes | memoryview) -> bool:
        """Send one message to ``worker``; False (nothing sent) when its queue is full."""
        return _send_packets(worker, frames.packets(kind, payload))


def _send_packets(worker: Worker, packets: list[bytes]) -> bool:
    """Send all of one message's packets, or none of them when they would not fit."""
    if len(worker.outbox) + len(packets) > OUTBOX_LIMIT:
        return False
    for packet in packets:
        worker.send(packet)
    return True


def _report_boot_failure(sock: socket.socket, error: str) -> None:
    """Tell the master, in a forked worker, why it could not boot (best effort)."""
    line = " ".join(error.split())[:1000] or "unknown error"
    try:
        for packet in frames.packets(Kind.BOOT_FAILED, line.encode(errors="replace")):
            frames.send_packet(sock, packet)
    except OSError:
        pass


def describe_exit(status: int) -> str:
    """``exit code N`` or ``signal NAME`` for a wait status."""
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        try:
            return f"signal {signal.Signals(signum).name}"
        except ValueError:
            return f"signal {signum}"
    return f"exit code {os.waitstatus_to_exitcode(status)}"
