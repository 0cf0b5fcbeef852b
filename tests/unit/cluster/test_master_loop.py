"""The master's loop turn by turn, in this process: a real listener, real client sockets
and a real channel whose worker end the test holds (no fork).

What is checked: the accept linger leaves the loop free for the workers' channels (it
is a selector timeout, never a sleep), and reaping waits for CHLD instead of running on
every wake-up.
"""
from __future__ import annotations

import os
import selectors
import signal
import socket
import time

import pytest

from cluster.intake.acceptor import ACCEPT_LINGER
from cluster.master import REAP_INTERVAL, Master
from cluster.pool.worker import State, Worker
from cluster.protocol import frames
from cluster.protocol.frames import Kind
from tests.support.ports import free_port
from tests.support.waiting import wait_for

NO_SUCH_PID = 2 ** 22 + 7
"""The pid the test's pretend worker has: beyond pid_max, so never a real process."""


@pytest.fixture
def master():
    port = free_port()
    master = Master("tests.apps.chat:sio", bind=f"127.0.0.1:{port}", route="ip", workers=1)
    master._forker.reap = lambda: []  # waitpid(-1) here would reap pytest's own children
    master._open_listeners()
    master.port = port
    yield master
    master._acceptor.close()
    master._dispatcher.close()
    for worker in list(master._pool.by_pid.values()):
        master._pool._forget(worker)
    master._selector.close()
    master._commands.close()


@pytest.fixture
def worker_end(master):
    """A serving worker in slot 0 whose far end of the channel is the test's."""
    master_end, worker_end = frames.socket_pair()
    master_end.setblocking(False)
    worker = Worker(pid=NO_SUCH_PID, slot=0, tag=1, sock=master_end, state=State.SERVING)
    master._pool._enlist(worker)
    master._pool.serving[0] = worker
    master._acceptor.update()
    yield worker_end
    worker_end.close()


def _turn(master: Master, timeout: float | None = None) -> list[object]:
    """One turn of the loop, as Master._loop runs it; the file objects that were ready."""
    events = master._selector.select(master._next_timeout() if timeout is None else timeout)
    master._turn_started = time.monotonic()
    for key, mask in events:
        key.data(key.fileobj, mask)
    master._run_commands()
    master._tick(time.monotonic())
    return [key.fileobj for key, _mask in events]


def _handed_off(worker_end: socket.socket) -> tuple[str, int]:
    """The client address of the hand-off the worker end receives (its socket closed)."""
    packet, fd = frames.receive_packet(worker_end)
    assert packet[0] == Kind.HANDOFF and fd is not None
    os.close(fd)
    return frames.decode_address(frames.payload_of(packet))


def test_the_accept_linger_leaves_the_loop_to_the_workers_channels(master, worker_end):
    listener = master._acceptor.listeners[0][0]
    first = socket.create_connection(("127.0.0.1", master.port))
    events = wait_for(lambda: master._selector.select(0.5), 10, what="the first connection")
    assert [key.fileobj for key, _mask in events] == [listener]
    for key, mask in events:
        key.data(key.fileobj, mask)  # accepts and hands off, then lingers: it does not sleep
    assert _handed_off(worker_end) == first.getsockname()

    # lingering: the listeners are out of the selector, whose timeout ends the linger
    assert not master._acceptor.accepting
    with pytest.raises(KeyError):
        master._selector.get_key(listener)
    assert 0 <= master._next_timeout() <= ACCEPT_LINGER
    second = socket.create_connection(("127.0.0.1", master.port))

    # a worker's message is served by the next turn, whether the linger is over or not
    heartbeat = frames.Heartbeat(sessions=7, connections=9).encode()
    for packet in frames.packets(Kind.HEARTBEAT, heartbeat):
        worker_end.sendall(packet)
    worker = master._pool.serving[0]
    _turns_until(master, lambda: worker.sessions == 7, "the heartbeat handled")

    # the linger over, accepting resumes by itself and the next client is handed off
    _turns_until(master, lambda: _ready(worker_end), "the second connection handed off")
    assert _handed_off(worker_end) == second.getsockname()
    first.close()
    second.close()


def _turns_until(master: Master, done, what: str) -> None:
    """Turn the loop until ``done()``."""
    def turned() -> bool:
        _turn(master)
        return done()
    wait_for(turned, 10, interval=0.001, what=what)


def _ready(sock: socket.socket) -> bool:
    with selectors.DefaultSelector() as selector:
        selector.register(sock, selectors.EVENT_READ)
        return bool(selector.select(0))


def test_reaping_waits_for_chld_with_a_slow_safety_net(master, worker_end):
    reaps = []
    master._forker.reap = lambda: reaps.append(time.monotonic()) or []
    started = time.monotonic()
    for _ in range(200):
        master._tick(time.monotonic())
    turns_took = time.monotonic() - started
    assert len(reaps) <= 1 + turns_took / REAP_INTERVAL  # not one per turn
    before = len(reaps)
    master._on_signal(signal.SIGCHLD, None)
    _turn(master, 0)
    assert len(reaps) == before + 1  # CHLD reaps at once
