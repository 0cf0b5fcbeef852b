"""Several hosts in the master: sids of another host go to the forwarder, the forwarder is
supervised, its hand-backs are routed like a worker's. Fakes all around (no fork): the
pool of tests/support/fake_pool.py, a forwarder that is a channel end.

What a user sees of it with real masters on three loopback addresses:
tests/e2e/test_several_hosts.py.
"""
from __future__ import annotations

import signal
import socket

import pytest

from cluster.hosts.forwarder_config import ForwarderConfig
from cluster.intake.dispatch import Dispatcher
from cluster.master_hosts import HostId
from cluster.pool.forwarder_process import ForwarderHooks, ForwarderProcess
from cluster.protocol import frames
from cluster.protocol.frames import Kind
from cluster.protocol.sids import sid_prefix
from cluster.setup.config import make_settings
from tests.support.fake_pool import Clock, Processes, Watcher, World, exited, serving_world

HERE, THERE = 1, 2
RANDOM_PART = "Zml4ZWQtcmFuZG9tLXA_"
HOSTS_OPTIONS = dict(bind="127.0.0.11:8000", host_id=HERE,
                     peers="1=127.0.0.11:8000,2=127.0.0.12:8000")


def request(sid: str | None) -> bytes:
    query = f"&sid={sid}" if sid else ""
    return f"GET /socket.io/?EIO=4&transport=polling{query} HTTP/1.1\r\nHost: x\r\n\r\n".encode()


def client_fd() -> int:
    ours, theirs = socket.socketpair()
    theirs.close()
    return ours.detach()


class Forwarder:
    """A forwarder process that is a channel end, supervised by a real ForwarderProcess."""

    def __init__(self, clock: Clock) -> None:
        self.processes = Processes()
        self.watcher = Watcher()
        self.heard: list[tuple] = []
        hooks = ForwarderHooks(up=lambda link: self.heard.append(("up", link)),
                               hand_back=lambda fd, address, data: self.heard.append(
                                   ("hand_back", fd, address, data)),
                               hosts=lambda facts: self.heard.append(("hosts", facts)),
                               stranded=lambda packet, fd: self.heard.append(("stranded", fd)))
        self.process = ForwarderProcess(
            lambda: ForwarderConfig(host_id=HERE, advertise=("127.0.0.11", 8000)), hooks,
            timeout=20.0, fork=lambda config: self.processes.start(-1, 0),
            kill=self.processes.kill, clock=clock)
        self.process.attach(self.watcher)

    @property
    def pid(self) -> int:
        return self.process.link.pid  # type: ignore[union-attr]

    def say(self, kind: Kind, payload: bytes = b"", fd: int | None = None) -> None:
        for packet in frames.packets(kind, payload):
            frames.send_packet(self.processes.ends[self.pid], packet, fd)
        self.watcher.wake(self.process.link)  # type: ignore[arg-type]

    def received(self) -> list[bytes]:
        return self.processes.read_all(self.pid)

    def close(self) -> None:
        self.process.close_in_child()
        self.processes.close()


@pytest.fixture
def world():
    world = World(workers=2, **HOSTS_OPTIONS)
    yield world
    world.close()


@pytest.fixture
def forwarder(world):
    forwarder = Forwarder(world.clock)
    yield forwarder
    forwarder.close()


def hosts_dispatcher(world: World, forwarder: Forwarder | None = None) -> Dispatcher:
    dispatcher = Dispatcher(world.pool, make_settings("tests.apps.chat:sio", **HOSTS_OPTIONS))
    dispatcher.host = HERE
    if forwarder is not None:
        forwarder.process.start()
        forwarder.say(Kind.READY)
        dispatcher.forwarder = forwarder.process.link
    return dispatcher


def test_a_sid_of_another_host_is_handed_to_the_forwarder(world, forwarder):
    workers = serving_world(world)
    dispatcher = hosts_dispatcher(world, forwarder)
    dispatcher.route(client_fd(), ("10.0.0.7", 5000), sid_prefix(1, THERE) + RANDOM_PART)
    (packet,) = forwarder.received()
    assert packet[0] == Kind.HANDOFF
    assert frames.decode_address(frames.payload_of(packet)) == ("10.0.0.7", 5000)
    assert all(world.processes.read_all(w.pid) == [] for w in workers)
    assert dispatcher.forwarded == 1 and dispatcher.by_sid == 0


def test_a_sid_of_this_host_goes_to_its_worker_not_the_forwarder(world, forwarder):
    workers = serving_world(world)
    dispatcher = hosts_dispatcher(world, forwarder)
    owner = workers[1]
    dispatcher.route(client_fd(), ("10.0.0.7", 5000), sid_prefix(owner.tag, HERE) + RANDOM_PART)
    assert [p[0] for p in world.processes.read_all(owner.pid)] == [Kind.HANDOFF]
    assert forwarder.received() == [] and dispatcher.forwarded == 0


def test_with_one_host_a_sid_naming_a_host_goes_by_its_tag_as_ever(world):
    workers = serving_world(world)
    dispatcher = Dispatcher(world.pool, make_settings("tests.apps.chat:sio"))
    owner = workers[0]
    dispatcher.route(client_fd(), ("10.0.0.7", 5000), sid_prefix(owner.tag, THERE) + RANDOM_PART)
    assert [p[0] for p in world.processes.read_all(owner.pid)] == [Kind.HANDOFF]


def test_while_the_forwarder_is_down_another_hosts_connections_are_held_not_placed(world, forwarder):
    workers = serving_world(world)
    dispatcher = hosts_dispatcher(world)
    dispatcher.route(client_fd(), ("10.0.0.7", 5000), sid_prefix(1, THERE) + RANDOM_PART)
    dispatcher.hand_back(workers[0], client_fd(), ("10.0.0.8", 5001),
                         request(sid_prefix(3, THERE) + RANDOM_PART))
    assert all(world.processes.read_all(w.pid) == [] for w in workers)
    assert dispatcher.forward_held == 2
    assert not dispatcher.holding  # nothing to release them to yet
    forwarder.process.start()
    forwarder.say(Kind.READY)
    dispatcher.forwarder = forwarder.process.link
    assert dispatcher.holding
    dispatcher.release()
    assert [p[0] for p in forwarder.received()] == [Kind.HANDOFF, Kind.RESUME]
    assert dispatcher.forwarded == 2 and dispatcher.forward_held == 2 and not dispatcher.holding


def test_a_workers_hand_back_of_another_hosts_sid_is_resumed_on_the_forwarder(world, forwarder):
    workers = serving_world(world)
    dispatcher = hosts_dispatcher(world, forwarder)
    data = request(sid_prefix(workers[0].tag, THERE) + RANDOM_PART)  # same tag, other host
    dispatcher.hand_back(workers[0], client_fd(), ("10.0.0.7", 5000), data)
    (packet,) = forwarder.received()
    assert packet[0] == Kind.RESUME
    assert frames.split_resumed(frames.payload_of(packet)) == (("10.0.0.7", 5000), data)
    assert world.processes.read_all(workers[0].pid) == []


@pytest.mark.parametrize("whose", ["owner", "unknown worker", "no sid", "another host"])
def test_the_forwarders_hand_back_goes_to_a_worker_never_back(world, forwarder, whose):
    workers = serving_world(world)
    for worker in workers:
        world.processes.read_all(worker.pid)
    dispatcher = hosts_dispatcher(world, forwarder)
    owner = workers[1]
    sid = {"owner": sid_prefix(owner.tag, HERE) + RANDOM_PART,
           "unknown worker": sid_prefix(999, HERE) + RANDOM_PART, "no sid": None,
           "another host": sid_prefix(1, THERE) + RANDOM_PART}[whose]
    data = request(sid)
    dispatcher.hand_back_from_forwarder(client_fd(), ("10.0.0.7", 5000), data)
    got = {w.pid: world.processes.read_all(w.pid) for w in workers}
    (taker,) = [w for w in workers if got[w.pid]]
    (packet,) = got[taker.pid]
    assert packet[0] == Kind.RESUME
    assert frames.split_resumed(frames.payload_of(packet)) == (("10.0.0.7", 5000), data)
    if whose == "owner":
        assert taker is owner
    assert forwarder.received() == [] and dispatcher.forwarded_back == 1


# ---------------------------------------------------- the forwarder's supervision

def test_the_forwarder_is_up_once_ready_and_its_messages_reach_the_master(forwarder):
    forwarder.process.start()
    assert not forwarder.process.up and forwarder.heard == []
    forwarder.say(Kind.READY)
    assert forwarder.process.up and forwarder.heard == [("up", forwarder.process.link)]
    forwarder.say(Kind.HOSTS, b'{"hosts": {"2": "127.0.0.12:8000"}}')
    assert forwarder.heard[-1] == ("hosts", {"hosts": {"2": "127.0.0.12:8000"}})
    fd = client_fd()
    forwarder.say(Kind.HANDBACK, frames.resumed(("10.0.0.7", 5000), request(None)), fd)
    kind, got_fd, address, data = forwarder.heard[-1]
    assert (kind, address, data) == ("hand_back", ("10.0.0.7", 5000), request(None))
    socket.socket(fileno=got_fd).close()


def test_a_dead_forwarder_is_down_at_once_and_respawns_after_a_backoff(world, forwarder):
    process = forwarder.process
    process.start()
    forwarder.say(Kind.READY)
    first = forwarder.pid
    process.exited(first, exited(1))  # died young: backoff
    assert not process.alive and forwarder.heard[-1] == ("up", None)
    process.tick(world.clock.now)
    assert not process.alive
    world.clock.now += 1.0
    process.tick(world.clock.now)
    assert process.alive and forwarder.pid != first and process.respawns == 1
    assert not process.exited(12345, exited(0))  # not the forwarder: a worker's business


def test_a_silent_forwarder_is_killed_and_a_bad_message_kills_it(world, forwarder):
    process = forwarder.process
    process.start()
    world.clock.now += 21.0
    process.tick(world.clock.now)
    assert forwarder.processes.signals == [(forwarder.pid, signal.SIGKILL)]
    process.exited(forwarder.pid, signal.SIGKILL)
    world.clock.now += 60.0
    process.tick(world.clock.now)
    forwarder.say(Kind.PUBLISH, b"x")  # a worker's message: not the forwarder's
    assert forwarder.processes.signals[-1] == (forwarder.pid, signal.SIGKILL)


def test_a_graceful_stop_drains_the_forwarder_and_it_is_not_respawned(world, forwarder):
    process = forwarder.process
    process.start()
    forwarder.say(Kind.READY)
    process.drain()
    assert [p[0] for p in forwarder.received()] == [Kind.DRAIN]
    assert forwarder.heard[-1] == ("up", None) and not process.up
    process.exited(forwarder.pid, exited(0))
    world.clock.now += 60.0
    process.tick(world.clock.now)
    assert not process.alive


def test_the_peers_ips_come_from_peers_or_the_forwarders_hosts():
    host = HostId(make_settings("tests.apps.chat:sio", **HOSTS_OPTIONS))
    host.id = HERE
    assert host.peer_ips(host_settings_peers()) == frozenset({"127.0.0.12"})
    assert host.peer_ips_of({"hosts": {"1": "127.0.0.11:8000", "3": "127.0.0.13:8000",
                                       "x": "bad", "4": 7}}) == frozenset({"127.0.0.13"})
    assert host.peer_ips_of({"hosts": []}) == frozenset()
    config = host.config()
    assert (config.host_id, config.advertise, config.adapter) == (HERE, ("127.0.0.11", 8000), None)


def host_settings_peers() -> dict:
    return make_settings("tests.apps.chat:sio", **HOSTS_OPTIONS).static_peers
