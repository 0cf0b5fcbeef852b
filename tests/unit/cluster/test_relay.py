"""The embedded relay, on a pool of fake workers (tests/fake_pool.py): who gets a
published message, and what is counted when a worker's channel is full."""
from __future__ import annotations

import pytest

from cluster.pool.worker import OUTBOX_LIMIT
from cluster.protocol import frames
from cluster.protocol.frames import Kind
from cluster.relay import Relay
from tests.support.fake_pool import World, serving_world


@pytest.fixture
def world():
    world = World(workers=3)
    yield world
    world.close()


def delivered(world: World, worker) -> list[bytes]:
    """The DELIVER payloads ``worker`` received since the last look."""
    return [frames.payload_of(packet) for packet in world.processes.read_all(worker.pid)
            if packet[0] == Kind.DELIVER]


def test_a_broadcast_reaches_every_other_worker_past_booting(world):
    first, second, third = serving_world(world)
    world.pool.resize(4)  # slot 3 boots: it gets nothing yet
    relay = Relay(world.pool)
    relay.publish(first, Kind.PUBLISH, b"hello")
    assert [delivered(world, w) for w in (first, second, third)] == [[], [b"hello"], [b"hello"]]
    assert delivered(world, world.booting(3)) == []
    assert (relay.broadcasts, relay.unicasts, relay.dropped, relay.bytes) == (1, 0, 0, 5)


def test_a_message_for_one_session_goes_to_its_owner_alone(world):
    first, second, third = serving_world(world)
    relay = Relay(world.pool)
    relay.publish(first, Kind.PUBLISH_TO, (third.tag, memoryview(b"for you")))
    assert [delivered(world, w) for w in (first, second, third)] == [[], [], [b"for you"]]
    relay.publish(first, Kind.PUBLISH_TO, (999, memoryview(b"nobody's")))  # no such worker
    assert [delivered(world, w) for w in (second, third)] == [[b"nobody's"], [b"nobody's"]]
    assert (relay.broadcasts, relay.unicasts) == (1, 1)


def test_a_worker_whose_channel_is_full_misses_the_message_and_it_is_counted(world):
    first, second, third = serving_world(world)
    packet = b"x" * (frames.MAX_FRAGMENT - 16)
    while len(second.outbox) < OUTBOX_LIMIT:
        second.send(packet)
    relay = Relay(world.pool)
    relay.publish(first, Kind.PUBLISH, b"news")
    relay.publish(first, Kind.PUBLISH_TO, (second.tag, memoryview(b"direct")))
    assert delivered(world, third) == [b"news"]
    assert relay.dropped == 2
