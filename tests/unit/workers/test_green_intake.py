"""A green worker's intake past ``--worker-connections``: served while there is room,
answered 503 past it (once the head is in), closed when even the refusals are full."""
from __future__ import annotations

import contextlib
import logging
import socket

from workers.green_intake import GreenIntake, refuse
from workers.limits import RESPONSE_503

HEAD = b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n"


def no_timeout(seconds: float, exception: object = None) -> contextlib.AbstractContextManager:
    """Stands in for a green ``Timeout``: the socketpairs here never keep anyone waiting."""
    return contextlib.nullcontext()


class Intake:
    """A :class:`GreenIntake` whose room and refusal room the test sets, running each
    refusal at once in the calling thread."""

    def __init__(self, room: bool, refusal_room: bool = True) -> None:
        self.room, self.refusal_room = room, refusal_room
        self.served: list[bytes] = []
        self.intake = GreenIntake(lambda sock, address, preface: self.served.append(preface),
                                  lambda: self.room,
                                  (lambda run, *args: run(*args), lambda: self.refusal_room),
                                  no_timeout, limit=2)


def test_a_client_is_served_while_there_is_room():
    intake = Intake(room=True)
    ours, theirs = socket.socketpair()
    with ours, theirs:
        intake.intake.take(ours, ("127.0.0.2", 1), b"preface")
    assert intake.served == [b"preface"]
    assert intake.intake.refused.count == 0


def test_past_the_limit_a_client_reads_a_503():
    intake = Intake(room=False)
    ours, theirs = socket.socketpair()
    with theirs:
        theirs.sendall(HEAD)
        intake.intake.take(ours, ("127.0.0.2", 1), b"")
        answer = b""
        while chunk := theirs.recv(4096):
            answer += chunk
    assert answer == RESPONSE_503
    assert ours.fileno() == -1
    assert intake.served == []


def test_a_refusal_reads_the_whole_head_then_answers():
    ours, theirs = socket.socketpair()
    with theirs:
        theirs.sendall(HEAD[20:])
        refuse(ours, HEAD[:20], no_timeout)
        answer = b""
        while chunk := theirs.recv(4096):
            answer += chunk
    assert answer == RESPONSE_503
    assert ours.fileno() == -1


def test_a_client_that_closes_before_its_head_gets_nothing():
    ours, theirs = socket.socketpair()
    theirs.sendall(HEAD[:10])
    theirs.shutdown(socket.SHUT_WR)
    with theirs:
        refuse(ours, b"", no_timeout)
        assert theirs.recv(4096) == b""
    assert ours.fileno() == -1


def test_with_every_refusal_busy_a_client_is_closed_at_once():
    intake = Intake(room=False, refusal_room=False)
    ours, theirs = socket.socketpair()
    with theirs:
        intake.intake.take(ours, ("127.0.0.2", 1), HEAD)
        assert theirs.recv(4096) == b""
    assert ours.fileno() == -1


def test_refusals_are_one_warning_per_burst(caplog):
    intake = Intake(room=False, refusal_room=False)
    with caplog.at_level(logging.WARNING, logger="sticky_cluster.worker"):
        for _ in range(3):
            ours, theirs = socket.socketpair()
            with theirs:
                intake.intake.take(ours, ("127.0.0.2", 1), HEAD)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "is full (--worker-connections 2): a connection gets a 503" \
        in lines[0]
    assert intake.intake.refused.count == 3
