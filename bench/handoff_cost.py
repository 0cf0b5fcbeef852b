"""The master's CPU per hand-off, in one process, for an instruction counter.

``python -m bench.handoff_cost N handoff|bare`` accepts N loopback connections (each sends
a polling request line first, so ``TCP_DEFER_ACCEPT`` returns it with its bytes) and:

* ``handoff``: routes them as the master does: :class:`cluster.intake.intake.Intake`
  accepts, peeks, decides, and :class:`cluster.intake.dispatch.Dispatcher` places each on
  one of two serving workers of a real :class:`cluster.pool.pool.WorkerPool` (fake
  processes: channel ends this process reads and empties, closing the fds);
* ``bare``: accepts each and closes it.

Run under ``valgrind --tool=callgrind`` with N and with 0: (N − 0) / N is the instructions
per connection, ``handoff`` less ``bare`` what the master's routing costs per hand-off
(the clients' side and the accept are in both). Instructions, unlike time, repeat on a
loaded machine. ``PYTHONPATH`` picks the tree measured (docs/benchmarks.md: "Against 0cf829f").
"""
from __future__ import annotations

import os
import selectors
import socket
import sys

from cluster.intake.dispatch import Dispatcher
from cluster.intake.intake import Intake
from cluster.pool.pool import WorkerPool
from cluster.pool.pool_wiring import PoolHooks
from cluster.protocol import frames
from cluster.protocol.frames import Kind
from cluster.setup.config import make_settings

REQUEST = (b"GET /socket.io/?EIO=4&transport=polling&t=PbcD1x HTTP/1.1\r\nHost: 127.0.0.1\r\n"
           b"Accept: */*\r\n\r\n")
BATCH = 50


class _Starter:
    """Worker processes that are channel ends of this process."""

    def __init__(self) -> None:
        self.ends: list[socket.socket] = []

    def start(self, slot: int, tag: int) -> tuple[int, socket.socket]:
        master_end, worker_end = frames.socket_pair()
        master_end.setblocking(False)
        worker_end.setblocking(False)
        self.ends.append(worker_end)
        return 1000 + len(self.ends), master_end

    def reap(self) -> list[tuple[int, int]]:
        return []

    def memory(self, pid: int) -> int | None:
        return None


class _Watcher:
    def __init__(self) -> None:
        self.callbacks: dict = {}

    def watch(self, sock, events, on_event) -> None:
        self.callbacks[sock] = on_event

    def unwatch(self, sock) -> None:
        self.callbacks.pop(sock, None)


def _drain(ends: list[socket.socket]) -> None:
    for end in ends:
        while True:
            try:
                _packet, fd = frames.receive_packet(end)
            except BlockingIOError:
                break
            if fd is not None:
                os.close(fd)


def main(count: int, mode: str) -> None:
    """Accept ``count`` connections and hand them off (``handoff``) or close them (``bare``)."""
    settings = make_settings("bench.app:sio", workers=2)
    starter, watcher = _Starter(), _Watcher()
    pool = WorkerPool(settings, starter, PoolHooks(), cpus=1, kill=lambda pid, signum: None)
    pool.attach(watcher)
    pool.start()
    for end in starter.ends:
        end.send(frames.packets(Kind.READY)[0])
    for worker in list(pool.by_pid.values()):
        watcher.callbacks[worker.sock](worker.sock, selectors.EVENT_READ)
    assert len(pool.serving) == 2
    intake = Intake(Dispatcher(pool, settings), settings)
    selector = selectors.DefaultSelector()
    intake.attach(selector)
    listener = socket.create_server(("127.0.0.1", 0), backlog=1024)
    listener.setblocking(False)
    intake.prepare(listener)
    address = listener.getsockname()
    done = 0
    while done < count:
        batch = min(BATCH, count - done)
        clients = [socket.create_connection(address) for _ in range(batch)]
        for client in clients:
            client.sendall(REQUEST)
        accepted = 0
        while accepted < batch:
            if mode == "handoff":
                before = intake.accepted
                intake.accept_from(listener)
                accepted += intake.accepted - before
            else:
                try:
                    fd, _ = listener._accept()  # type: ignore[attr-defined]
                except BlockingIOError:
                    continue
                os.close(fd)
                accepted += 1
        for client in clients:
            client.close()
        _drain(starter.ends)
        done += batch
    assert intake.pending_count == 0


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
