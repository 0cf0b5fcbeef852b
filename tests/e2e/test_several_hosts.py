"""Several hosts, no balancer: each request goes to whichever host the test picks, and is
served by its session's worker wherever that is (issue 21).

Three masters on 127.0.0.11, .12 and .13 (two workers each, the directory of hosts in a
private redis-server): a session made on one host is served through the others, polling and
websocket; a broadcast reaches clients of every host; sessions of two hosts alternate on
one client connection; bad input is answered at once (400 or 502), never held. Then the
shared hosts are broken on purpose, in this order: a host killed ``-9`` (its sids get 400
everywhere), a new host joins and serves, a host stopped gracefully leaves the directory
before it drains. Two more masters with ``--peers`` (the embedded relay, no directory in
a broker) forward as well, and answer 502 for a peer that accepts and never answers.

The tests of the three hosts share them (one ``xdist_group``, in this order); clients come
from their own loopback addresses (127.0.3.x), a request's host is the address it is sent to.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import struct
import urllib.request
from pathlib import Path

import pytest

from cluster.protocol.sids import encode_host, host_of, sid_prefix
from tests.support.clients import room_broadcast_reaches_every_worker, run
from tests.support.masters import ClusterProcess, cli, gone
from tests.support.ports import free_port
from tests.support.rawclient import (KeepAlive, RawClient, frame, read_frame, read_to_eof,
                                     tcp_from, upgrade)
from tests.support.waiting import wait_for

pytestmark = pytest.mark.xdist_group("several-hosts")

HOSTS = ("127.0.0.11", "127.0.0.12", "127.0.0.13")
JOINER = "127.0.0.14"
SILENT = "127.0.0.15"
CHANNEL = "several-hosts"
RANDOM_PART = "Zml4ZWQtcmFuZG9tLXA_"
PROXY_V2 = (b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11]) + struct.pack("!H", 12)
            + bytes([198, 51, 100, 9]) + bytes([10, 0, 0, 5]) + struct.pack("!HH", 61000, 443))


def client_source(index: int) -> str:
    return f"127.0.3.{1 + index}"


class Host:
    """One master of the test, at its own loopback address and port."""

    def __init__(self, tmp: Path, address: str, port: int, args: list[str]) -> None:
        self.address, self.port = address, port
        self.status_port = free_port()
        self.master = ClusterProcess(
            ["run", "tests.apps.chat:sio", "--workers", "2", "--bind", f"{address}:{port}",
             "--status-bind", f"127.0.0.1:{self.status_port}", *args],
            tmp / f"master-{address}.log")
        self.master.status_url = f"http://127.0.0.1:{self.status_port}"
        self.children: set[int] = set()

    def ready(self) -> "Host":
        self.master.wait_log("cluster ready", timeout=90)
        wait_for(lambda: self.hosts()["forwarder"]["up"], 30, what="the forwarder up")
        self.children = self.master.worker_pids()
        return self

    def hosts(self) -> dict:
        return self.master.status()["hosts"]

    @property
    def id(self) -> int:
        return self.hosts()["host_id"]

    def workers(self) -> set[int]:
        return {worker["pid"] for worker in self.master.status()["workers"]}

    def client(self, index: int) -> RawClient:
        return RawClient(tcp_from(self.port, client_source(index), self.address))

    def stop(self) -> None:
        self.master.stop()
        wait_for(lambda: all(gone(pid) for pid in self.children), 15,
                 what=f"the children of {self.address} to exit")


def whoami(client: RawClient, sid: str) -> dict:
    client.sid = sid
    return client.call("whoami")


def sid_on(host: Host, index: int) -> str:
    """A connected Socket.IO session made on ``host`` (its handshake and connect there)."""
    return host.client(index).open().sid  # type: ignore[return-value]


def hang_up(host: Host, sid: str) -> None:
    RawClient(tcp_from(host.port, client_source(90), host.address)).request("POST", "1", sid)


@pytest.fixture(scope="module")
def directory(redis_server):
    """The directory of hosts: this pytest process's private redis-server (the keys under
    :data:`CHANNEL`)."""
    return redis_server


@pytest.fixture(scope="module")
def three(tmp_path_factory, directory):
    """Three hosts sharing the directory in ``directory``, each knowing the others."""
    tmp = tmp_path_factory.mktemp("three-hosts")
    port = free_port()
    hosts = [Host(tmp, address, port, ["--adapter", directory.url, "--channel", CHANNEL,
                                       "--advertise", f"{address}:{port}"])
             for address in HOSTS]
    try:
        for host in hosts:
            host.ready()
        wait_for(lambda: all(len(host.hosts()["known"]) == 3 for host in hosts), 30,
                 what="every host in every host's directory")
        yield hosts
    finally:
        for host in hosts:
            host.stop()


# ------------------------------------------------------------------ serving across hosts

def test_a_session_of_one_host_is_served_by_its_worker_through_another(three):
    a, b, _c = three
    client = a.client(1)
    sid = client.handshake()
    assert host_of(sid) == a.id
    client.connect = tcp_from(b.port, client_source(1), b.address)  # every next request: to B
    client.sid = sid
    assert client.request("POST", "40") == (200, "OK")
    assert client.request("GET")[1].startswith("40{")
    answer = client.call("whoami")
    assert answer["pid"] in a.workers()
    assert answer["remote_addr"] == client_source(1)  # the real client, through B (PROXY v2)
    wait_for(lambda: b.hosts()["peers"].get(str(a.id), {}).get("requests", 0) >= 4, 10,
             what="B's forwards to A counted")
    with urllib.request.urlopen(f"{b.master.status_url}/metrics", timeout=10) as scrape:
        metrics = scrape.read().decode()
    assert f'sticky_cluster_forwarded_requests_total{{host="{a.id}"}}' in metrics
    assert f"sticky_cluster_host_id {float(b.id)}" in metrics

    sock, _head = upgrade(b.port, client_source(1), sid, host=b.address)  # websocket via B
    with sock:
        sock.sendall(frame(1, b"2probe"))
        assert read_frame(sock) == (1, b"3probe")
        sock.sendall(frame(1, b"5"))
        sock.sendall(frame(1, b'421["whoami"]'))
        while True:
            opcode, payload = read_frame(sock)
            if payload.startswith(b"431["):
                break
        assert json.loads(payload[3:])[0]["pid"] == answer["pid"]
        sock.sendall(frame(1, b"1"))
    wait_for(lambda: b.hosts()["peers"][str(a.id)]["upgrades"] >= 1, 10,
             what="the upgrade counted")


def test_a_broadcast_reaches_clients_of_every_host(three):
    listeners, _heard_from, _shouter = run(room_broadcast_reaches_every_worker(
        [f"http://{host.address}:{host.port}" for host in three], clients_per_url=4))
    for host in three:
        assert listeners & host.workers(), f"no listener on {host.address}"


def test_sessions_of_two_hosts_alternate_on_one_connection_each_answered_by_its_worker(three):
    """As through a round-robin balancer's kept-alive connection: once the connection has
    reached B's forwarder (a request of A's session) it stays there, and B's own session's
    requests are relayed to its worker: the connection goes to the forwarder once, and one
    connection (to that worker) comes back from it, however many requests alternate."""
    a, b, c = three
    sessions = {sid_on(a, 10): a, sid_on(c, 11): c, sid_on(b, 12): b}
    before = b.master.status()
    relayed = before["hosts"]["relayed_own"]
    connection = KeepAlive(b.port, client_source(13), b.address)
    try:
        for round_ in range(3):
            for sid, home in sessions.items():
                assert connection.request("POST", sid, f'42{round_}["whoami"]') == (200, "OK")
                status, body = connection.request("GET", sid)
                assert status == 200 and body.startswith(f"43{round_}["), body
                assert json.loads(body[len(f"43{round_}"):])[0]["pid"] in home.workers()
    finally:
        connection.close()
    after = b.master.status()
    assert after["hosts"]["forwarded"] - before["hosts"]["forwarded"] == 1
    assert after["hosts"]["handed_back"] - before["hosts"]["handed_back"] == 1
    assert after["handoffs"]["handed_back"] == before["handoffs"]["handed_back"]  # no worker's
    wait_for(lambda: b.hosts()["relayed_own"] - relayed >= 6, 10,  # (counts come each second)
             what="B's six requests relayed to its worker, counted")
    for sid, home in sessions.items():
        hang_up(home, sid)


# ------------------------------------------------------------------------- bad input

def test_a_forged_sid_of_a_host_that_does_not_exist_gets_400_at_once(three):
    a = three[0]
    forged = encode_host(4000) + "AAB" + RANDOM_PART
    status, body = a.client(20).request("GET", sid=forged)
    assert (status, body) == (400, json.dumps(f"Invalid session {forged}"))
    wait_for(lambda: a.hosts()["refused"]["unknown_host"] >= 1, 10, what="it counted")


def test_a_sid_of_this_host_with_an_unknown_worker_gets_400_from_a_worker(three):
    a = three[0]
    forwarded = a.hosts()["forwarded"]
    status, body = a.client(21).request("GET", sid=sid_prefix(9999, a.id) + RANDOM_PART)
    assert status == 400 and "Invalid session" in body
    assert a.hosts()["forwarded"] == forwarded  # not the forwarder's: a worker answered


def test_a_forward_loop_gets_502(three, directory):
    """A directory entry that names the wrong host (77 at A's address): B forwards once,
    A would forward again: 502, never a second hop."""
    a, b, _c = three
    directory.client().set(f"{CHANNEL}:hosts:77", f"{a.address}:{a.port}", px=60_000)
    try:
        wait_for(lambda: "77" in b.hosts()["known"] and "77" in a.hosts()["known"], 10,
                 what="the bad entry read")
        status, _body = b.client(22).request("GET", sid=encode_host(77) + "AAB" + RANDOM_PART)
        assert status == 502
        wait_for(lambda: a.hosts()["refused"]["loop"] >= 1, 10, what="it counted")
    finally:
        directory.client().delete(f"{CHANNEL}:hosts:77")


def test_an_entry_that_points_back_at_the_host_itself_gets_502(three, directory):
    _a, b, _c = three
    directory.client().set(f"{CHANNEL}:hosts:78", f"{b.address}:{b.port}", px=60_000)
    try:
        wait_for(lambda: "78" in b.hosts()["known"], 10, what="the bad entry read")
        status, _body = b.client(24).request("GET", sid=encode_host(78) + "AAB" + RANDOM_PART)
        assert status == 502
    finally:
        directory.client().delete(f"{CHANNEL}:hosts:78")


def test_a_client_sending_a_proxy_v2_header_itself_is_refused(three):
    a = three[0]
    request = b"GET /socket.io/?EIO=4&transport=polling HTTP/1.0\r\nHost: x\r\n\r\n"
    with socket.create_connection((a.address, a.port), timeout=10,
                                  source_address=(client_source(23), 0)) as sock:
        sock.sendall(PROXY_V2 + request)
        try:
            answer = read_to_eof(sock)
        except ConnectionResetError:  # closed with the request unread
            answer = b""
        assert answer == b""  # closed, unanswered
    assert a.client(23).request("GET", sid="")[0] == 200  # without it, served


def test_a_second_master_claiming_a_held_host_id_refuses_to_start_in_one_line(three, directory):
    a = three[0]
    started = cli("run", "tests.apps.chat:sio", "--workers", "1", "--bind", f"{JOINER}:{a.port}",
                  "--adapter", directory.url, "--channel", CHANNEL, "--host-id", str(a.id))
    assert started.returncode == 1
    (line,) = started.stderr.strip().splitlines()
    assert f"host id {a.id} is held by {a.address}:{a.port} (another master)" in line


# ------------------------------------------------------------- hosts come and go (in order)

def test_a_host_killed_9_gets_its_sids_400_from_the_others_within_seconds(three):
    a, b, c = three
    sid = sid_on(c, 30)
    forwarder = c.hosts()["forwarder"]["pid"]
    victims = [c.master.pid, *(c.master.worker_pids() - {forwarder})]  # master and workers
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    c.master.wait(10)
    wait_for(lambda: all(gone(pid) for pid in [*victims, forwarder]), 10,
             what="the killed host's processes gone, its forwarder too (no orphan)")
    for host in (a, b):
        status, body = host.client(31).request("GET", sid=sid)  # answered, never held
        assert (status, body) == (400, json.dumps(f"Invalid session {sid}"))  # engineio's
    wait_for(lambda: str(host_of(sid)) not in a.hosts()["known"], 15,
             what="the killed host out of the directory")
    assert a.client(32).open().call("whoami")["pid"] in a.workers()  # nothing else disturbed


def test_a_new_host_joins_and_serves(three, directory, tmp_path):
    a = three[0]
    joiner = Host(tmp_path, JOINER, a.port, ["--adapter", directory.url, "--channel", CHANNEL,
                                             "--advertise", f"{JOINER}:{a.port}"])
    try:
        joiner.ready()
        wait_for(lambda: str(joiner.id) in a.hosts()["known"], 15, what="A to know the new host")
        client = joiner.client(40)
        sid = client.handshake()
        assert host_of(sid) == joiner.id
        client.connect = tcp_from(a.port, client_source(40), a.address)
        client.sid = sid
        assert client.request("POST", "40") == (200, "OK")
        assert client.request("GET")[1].startswith("40{")
        assert client.call("whoami")["pid"] in joiner.workers()
    finally:
        joiner.stop()


def test_a_host_stopped_gracefully_leaves_the_directory_before_it_drains(three, directory):
    a, b = three[0], three[1]
    sock, _head = upgrade(b.port, client_source(50), host=b.address)  # a session B drains
    with sock:
        sock.sendall(frame(1, b"40"))
        key = f"{CHANNEL}:hosts:{b.id}"
        assert directory.client().exists(key)
        b.master.signal(signal.SIGTERM)
        wait_for(lambda: not directory.client().exists(key), 10, what="B out of the directory")
        assert b.master.proc.poll() is None  # still draining its websocket
        wait_for(lambda: str(b.id) not in a.hosts()["known"], 10, what="A to see B gone")


# -------------------------------------------------------------------- static --peers

@pytest.fixture(scope="module")
def silent_peer():
    """A host that accepts connections and never answers."""
    listener = socket.create_server((SILENT, 0))
    yield listener.getsockname()[1], listener
    listener.close()


def test_with_peers_a_session_is_served_through_another_host_whose_forwarder_respawns(
        tmp_path, silent_peer):
    silent_port, _listener = silent_peer
    port = free_port()
    peers = f"1={HOSTS[0]}:{port},2={HOSTS[1]}:{port},3={SILENT}:{silent_port}"
    a, b = (Host(tmp_path, address, port, ["--host-id", str(index + 1), "--peers", peers,
                                          "--header-timeout", "3"])
            for index, address in enumerate(HOSTS[:2]))
    try:
        a.ready(), b.ready()
        client = a.client(60)
        sid = client.handshake()
        assert host_of(sid) == 1
        client.connect = tcp_from(b.port, client_source(60), b.address)
        client.sid = sid
        assert client.request("POST", "40") == (200, "OK")
        assert client.request("GET")[1].startswith("40{")
        assert client.call("whoami")["pid"] in a.workers()

        # a peer that never answers: 502 after the header timeout
        status, _body = b.client(61).request("GET", sid=sid_prefix(1, 3) + RANDOM_PART)
        assert status == 502
        wait_for(lambda: b.hosts()["refused"]["unanswered"] >= 1, 10, what="it counted")

        before = b.hosts()["forwarder"]  # B's forwarder killed: respawned, forwards again
        os.kill(before["pid"], signal.SIGKILL)
        def respawned() -> bool:  # one look: up and a new pid in the same facts
            forwarder = b.hosts()["forwarder"]
            return forwarder["up"] and forwarder["pid"] not in (None, before["pid"])

        wait_for(respawned, 30, what="B's forwarder respawned")
        assert b.hosts()["forwarder"]["respawns"] == before["respawns"] + 1
        assert whoami(client, sid)["pid"] in a.workers()
        b.children = b.master.worker_pids()
    finally:
        a.stop()
        b.stop()
