"""A worker's Engine.IO pings: sent by a timer of its loop once the ping interval has
passed, as python-engineio's green thread or task sent them, and never twice for one answer.

The sessions are stand-ins with python-engineio's attributes; the ping interval is 0, so
``eventlet.sleep(0)`` runs an eventlet hub's timer, and one turn of an asyncio loop its own
(neither waits).
"""
from __future__ import annotations

import workers.eventlet.runtime  # noqa: F401 (first: it hushes eventlet's deprecation warning)

import asyncio
import logging
import time
from types import SimpleNamespace

import eventlet
from engineio import packet

from eventlet.hubs import get_hub

from workers.pings import into_queue, through_send, timed_schedule_ping

schedule_ping = timed_schedule_ping(get_hub().schedule_call_global, through_send)


class Session:
    """What a ping touches of an ``engineio.socket.Socket``."""

    def __init__(self, fail: bool = False) -> None:
        self.server = SimpleNamespace(ping_interval=0)
        self.sid = "sid1"
        self.last_ping = time.time()  # python-engineio's: the first ping may be scheduled
        self.closing = self.closed = False
        self.sent: list[packet.Packet] = []
        self._fail = fail

    def send(self, pkt: packet.Packet) -> None:
        if self._fail:
            raise RuntimeError("the queue is gone")
        self.sent.append(pkt)


def run_due() -> None:
    eventlet.sleep(0)
    eventlet.sleep(0)


def test_a_ping_is_sent_once_the_interval_has_passed_and_marks_when():
    session = Session()
    schedule_ping(session)
    assert session.last_ping is None  # python-engineio's ping timeout waits meanwhile
    before = time.time()
    run_due()
    assert [pkt.packet_type for pkt in session.sent] == [packet.PING]
    assert session.last_ping >= before


def test_one_answer_schedules_one_ping_however_often_it_is_scheduled():
    session = Session()
    schedule_ping(session)
    schedule_ping(session)  # a second PONG before the ping: python-engineio ignores it too
    run_due()
    assert len(session.sent) == 1


def test_a_session_closed_meanwhile_is_not_pinged():
    session = Session()
    schedule_ping(session)
    session.closed = True
    run_due()
    assert session.sent == []


def test_a_ping_that_fails_is_logged_and_the_hub_goes_on(caplog):
    failing, healthy = Session(fail=True), Session()
    with caplog.at_level(logging.ERROR, logger="sticky_cluster.worker"):
        schedule_ping(failing)
        schedule_ping(healthy)
        run_due()
    assert "the ping of session sid1 failed" in caplog.text
    assert len(healthy.sent) == 1


def test_an_asyncio_loops_timer_queues_the_ping_without_waiting():
    session = Session()

    async def answered_once() -> list[packet.Packet]:
        queue: asyncio.Queue[packet.Packet] = asyncio.Queue()
        session.queue = queue
        loop = asyncio.get_running_loop()
        timed_schedule_ping(loop.call_later, into_queue)(session)
        return [await asyncio.wait_for(queue.get(), 5)]

    assert [pkt.packet_type for pkt in asyncio.run(answered_once())] == [packet.PING]
    assert session.last_ping is not None
