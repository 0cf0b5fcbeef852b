"""The ping timeout does not count the time the worker's own loop ran late
(workers/ping_patience.py): the lateness measured from the heartbeats, and python-engineio's
own sockets (sync and asyncio) checked with it."""
from __future__ import annotations

import asyncio
import time

import engineio
import pytest
from engineio import async_socket, socket

from workers.ping_patience import LoopLag, install


def test_a_punctual_loop_has_no_lateness() -> None:
    lag = LoopLag(1.0, now=100.0)
    for beat in range(101, 111):
        lag.beat(now=float(beat))
    assert lag.late_since(100.0, now=110.5) == 0.0


def test_lateness_since_a_moment_counts_the_late_beats_after_it_and_the_overdue_one() -> None:
    lag = LoopLag(1.0, now=0.0)
    lag.beat(now=4.0)  # 3 s late, before the ping
    lag.beat(now=5.0)
    lag.beat(now=11.0)  # 5 s late, after the ping at 6
    lag.beat(now=12.0)
    assert lag.late_since(6.0, now=12.5) == 5.0
    assert lag.late_since(6.0, now=20.0) == 5.0 + 7.0  # the next beat is 7 s overdue now
    assert lag.late_since(0.0, now=12.5) == 8.0


def test_only_what_is_kept_is_counted() -> None:
    lag = LoopLag(100.0, now=0.0)  # keeps 7 beats
    for beat in range(1, 20):
        lag.beat(now=beat * 110.0)  # each 10 s late
    assert lag.late_since(0.0, now=19 * 110.0) == pytest.approx(60.0)  # 6 of the 7 kept


@pytest.fixture
def patched(monkeypatch):
    """install() on python-engineio's classes, undone after the test."""
    monkeypatch.setattr(socket.Socket, "check_ping_timeout", socket.Socket.check_ping_timeout)
    monkeypatch.setattr(async_socket.AsyncSocket, "check_ping_timeout",
                        async_socket.AsyncSocket.check_ping_timeout)
    lag = LoopLag(1.0)
    install(lag)
    return lag


def test_a_client_is_not_closed_for_the_time_its_worker_was_late(patched) -> None:
    server = engineio.Server(async_mode="threading", ping_timeout=20)
    waited = socket.Socket(server, "patient-sid")
    waited.last_ping = time.time() - 25  # its answer not read for 25 s
    patched._last -= 10  # the loop is 9 s behind now (its beat every 1 s)
    assert waited.check_ping_timeout() is True and not waited.closed

    gone = socket.Socket(server, "gone-sid")
    gone.last_ping = time.time() - 40  # 40 s, 9 of them late: 31 on time, past 20
    assert gone.check_ping_timeout() is False and gone.closed


def test_the_same_for_asyncio_sockets(patched) -> None:
    server = engineio.AsyncServer(async_mode="asgi", ping_timeout=20)

    async def check(since: float) -> tuple[bool, bool]:
        sock = async_socket.AsyncSocket(server, "sid")
        sock.last_ping = time.time() - since
        return await sock.check_ping_timeout(), sock.closed

    patched._last -= 10
    assert asyncio.run(check(25)) == (True, False)
    assert asyncio.run(check(40)) == (False, True)


def test_installing_twice_wraps_once(patched) -> None:
    install(patched)
    server = engineio.Server(async_mode="threading", ping_timeout=20)
    gone = socket.Socket(server, "sid")
    gone.last_ping = time.time() - 30  # a punctual loop: closed as python-engineio would
    assert gone.check_ping_timeout() is False and gone.closed


def test_a_client_inside_its_timeout_costs_no_lateness_look_up(patched, monkeypatch) -> None:
    """Every packet sent is checked: the lateness is looked up only for a ping overdue."""
    server = engineio.Server(async_mode="threading", ping_timeout=20)
    monkeypatch.setattr(patched, "late_since", lambda *_: pytest.fail("looked up"))
    fresh = socket.Socket(server, "fresh-sid")
    assert fresh.check_ping_timeout() is True  # no ping yet
    fresh.last_ping = time.time() - 5
    assert fresh.check_ping_timeout() is True and not fresh.closed
    fresh.closed = True
    with pytest.raises(engineio.exceptions.SocketIsClosedError):
        fresh.check_ping_timeout()  # python-engineio's own answer
