"""New sessions on a kept-alive connection are placed like any new session.

A browser opens its tabs' sessions on the connections of its keep-alive pool, so the
handshake of a new tab often arrives on a connection that a worker already serves. That
worker hands the handshake back to the master (:func:`workers.handback.goes_back`),
which places it by ``--balance`` wherever it arrives. The decision is pure and tested
here on request lines, and the master's on a fake pool; a real cluster in every worker
runtime, with one real keep-alive connection: tests/e2e/test_keepalive_placement.py.
"""
from __future__ import annotations

import socket

import pytest

from cluster.intake.dispatch import Dispatcher
from cluster.setup.config import make_settings
from tests.support.fake_pool import World, serving_world
from cluster.protocol import frames
from cluster.protocol.sids import sid_prefix
from workers.handback import goes_back, starts_session

MINE, OTHER = 7, 9
RANDOM_PART = "Zml4ZWQtcmFuZG9tLXA_"
MY_SID, OTHER_SID = sid_prefix(MINE) + RANDOM_PART, sid_prefix(OTHER) + RANDOM_PART


# ------------------------------------------------------------------ decision (pure)

@pytest.mark.parametrize("line, handshake", [
    ("GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\n", True),
    ("GET /socket.io/?EIO=4&transport=polling&t=PbcD1x HTTP/1.1\r\n", True),
    ("GET /socket.io/?transport=websocket&EIO=4 HTTP/1.1\r\n", True),  # websocket first
    ("GET /custom/path/?EIO=3&transport=polling HTTP/1.0\n", True),  # any socketio_path
    (f"GET /socket.io/?EIO=4&transport=polling&sid={MY_SID} HTTP/1.1\r\n", False),
    ("GET /socket.io/?EIO=4&transport=polling&sid=forged HTTP/1.1\r\n", False),
    ("GET /socket.io/?EIO=4&transport=polling&sid=%1B HTTP/1.1\r\n", False),
    ("GET /socket.io/?EIO=4&transport=polling", False),  # not a whole line
    ("GET / HTTP/1.1\r\n", False),  # a page: served where it is
    ("GET /static/app.js?v=EIO=4 HTTP/1.1\r\n", False),
    ("GET /index.html#?EIO=4 HTTP/1.1\r\n", False),
    ("", False),
    ("garbage\r\n", False),
])
def test_starts_session_is_an_engineio_handshake(line, handshake):
    assert starts_session(line.encode("latin-1")) is handshake


@pytest.mark.parametrize("line, new_sessions, back", [
    ("GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\n", True, True),
    ("GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\n", False, False),  # --balance ip
    (f"GET /socket.io/?EIO=4&transport=polling&sid={OTHER_SID} HTTP/1.1\r\n", False, True),
    (f"GET /socket.io/?EIO=4&transport=polling&sid={MY_SID} HTTP/1.1\r\n", True, False),
    ("GET /hello HTTP/1.1\r\n", True, False),
])
def test_goes_back(line, new_sessions, back):
    assert goes_back(line.encode(), MINE, new_sessions) is back


# ------------------------------------------- the master's decision (fake pool, no fork)

@pytest.fixture
def world():
    world = World(workers=3)
    yield world
    world.close()


def handed_back_handshake(world, loads: list[int]) -> tuple[list, object]:
    """Workers with ``loads`` sessions; the first one hands back a handshake on a kept-alive
    connection. The workers, and the one the master resumed the connection on."""
    workers = serving_world(world)
    for worker, sessions in zip(workers, loads):
        world.beat(worker, sessions=sessions)
    for worker in workers:
        world.processes.read_all(worker.pid)
    dispatcher = Dispatcher(world.pool, make_settings("tests.apps.chat:sio"))
    client, other = socket.socketpair()
    other.close()
    handshake = b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n"
    dispatcher.hand_back(workers[0], client.detach(), ("127.0.0.5", 4000), handshake)
    got = {w.pid: world.processes.read_all(w.pid) for w in workers}
    (resumed_on,) = [w for w in workers if got[w.pid]]
    (packet,) = got[resumed_on.pid]
    assert packet[0] == frames.Kind.RESUME
    assert frames.split_resumed(frames.payload_of(packet)) == (("127.0.0.5", 4000), handshake)
    assert dispatcher.placed_back == 1 and dispatcher.handed_back == dispatcher.returned == 0
    return workers, resumed_on


def test_a_handed_back_handshake_goes_to_the_least_loaded_worker(world):
    workers, resumed_on = handed_back_handshake(world, [5, 9, 0])
    assert resumed_on is workers[2]


def test_a_handed_back_handshake_stays_when_its_worker_is_the_least_loaded(world):
    workers, resumed_on = handed_back_handshake(world, [0, 4, 4])
    assert resumed_on is workers[0]
