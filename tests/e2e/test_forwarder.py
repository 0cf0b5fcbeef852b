"""The forwarder standing alone (cluster.hosts.forwarder): the test plays its master on a
real channel, handing it real client sockets, and a stand-in peer host listens on its own
loopback address (tests.support.peer_host). What a client and a peer would notice: a
request of a peer's session answered by the peer, which knows the client's address; a
websocket relayed both ways; a request of this host's session relayed to its worker on a
connection kept for that worker (the test plays the worker), or handed back with exactly
its bytes (a handshake, an upgrade, a client not trusted with X-Forwarded-*); refusals
(400, 502, 431) at once and logged; no orphan when the master is gone."""
from __future__ import annotations

import json
import os
import socket
import uuid

import pytest

from cluster.hosts.forwarder_config import ForwarderConfig
from cluster.protocol import frames
from cluster.protocol.frames import Heartbeat, Kind
from cluster.protocol.sids import SID_LENGTH, sid_prefix
from tests.support.peer_host import FLOOD, ForwarderProcess, PeerHost
from tests.support.ports import free_port
from tests.support.rawclient import read_to_eof
from tests.support.waiting import wait_for

CLIENT_IP = "127.0.0.5"
SID = {host: sid_prefix(7, host) + "forwardedSessionXYZ0" for host in (1, 2, 3, 4, 5, 6, 9)}
"""A sid of worker 7 on each host: 1 is ours, 2 the peer, 3 dead, 4 silent, 5 ourselves
under another id, 6 a second peer, 9 not in the directory. (Fixed: parallel runs collect
the same test ids.)"""
OUR_WORKER_8 = sid_prefix(8, 1) + "forwardedSessionXYZ0"
"""A sid of another worker of ours (8)."""
assert all(len(sid) == SID_LENGTH for sid in (*SID.values(), OUR_WORKER_8))
UPGRADE = ("Connection: Upgrade\r\nUpgrade: websocket\r\n"
           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n")


@pytest.fixture
def peer():
    with PeerHost("127.0.0.12", free_port("127.0.0.12")) as host:
        yield host


@pytest.fixture
def second_peer():
    with PeerHost("127.0.0.16", free_port("127.0.0.16")) as host:
        yield host


@pytest.fixture
def silent():
    """A host that accepts connections and never answers (nobody accepts: the backlog does)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.14", 0))
        listener.listen(16)
        yield listener.getsockname()


@pytest.fixture
def master(tmp_path, peer, second_peer, silent):
    """The test as the forwarder's master: a listener clients connect to, the channel."""
    yield from started(tmp_path, peer, second_peer, silent)


@pytest.fixture
def guarded_master(request, tmp_path, peer, second_peer, silent):
    """As :func:`master`, the workers believing X-Forwarded-* from the addresses of the
    test's parameter only."""
    yield from started(tmp_path, peer, second_peer, silent, forwarded_allow_ips=request.param)


@pytest.fixture
def small_master(tmp_path, peer, second_peer, silent):
    """As :func:`master`, serving 2 client connections at most (``--worker-connections 2``)."""
    yield from started(tmp_path, peer, second_peer, silent, connection_limit=2)


def started(tmp_path, peer, second_peer, silent, **settings):
    advertise = ("127.0.0.11", free_port("127.0.0.11"))
    config = ForwarderConfig(
        host_id=1, advertise=advertise, channel="fwd",
        peers={1: advertise, 2: peer.address, 3: ("127.0.0.13", free_port("127.0.0.13")),
               4: silent, 5: advertise, 6: second_peer.address},
        header_timeout=1.0, keepalive_timeout=5.0, heartbeat_interval=0.2, graceful_timeout=2.0,
        **settings)
    forwarder = ForwarderProcess(config, tmp_path / "forwarder.log")
    try:
        forwarder.wait_for(Kind.READY)
        yield forwarder
    finally:
        forwarder.stop()


def connect(master: ForwarderProcess, read: bytes | None = None,
            sent: bytes = b"") -> socket.socket:
    """A client connected from CLIENT_IP, its connection handed to the forwarder (with
    ``sent`` already sent and ``read`` of it read by the master, for a RESUME)."""
    client = socket.create_connection(master.listener.getsockname(), timeout=10,
                                      source_address=(CLIENT_IP, 0))
    accepted, address = master.listener.accept()
    if sent:
        client.sendall(sent)
    if read:
        assert accepted.recv(len(read), socket.MSG_WAITALL) == read
    master.hand_off(accepted, address[:2], read)
    return client


def counted(master: ForwarderProcess, wanted, what: str) -> None:
    """Wait for a HOSTS message whose facts satisfy ``wanted`` (False while a count it
    reads is not there yet)."""
    def check() -> bool:
        master.receive()
        try:
            return bool(master.hosts and wanted(master.hosts))
        except KeyError:
            return False

    wait_for(check, 5, what=what)


def get(target: str, extra: str = "") -> bytes:
    return f"GET {target} HTTP/1.1\r\nHost: example.org\r\n{extra}\r\n".encode()


def read_response(sock: socket.socket) -> tuple[bytes, bytes]:
    """(head, body) of one response with a Content-Length."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed after {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    while len(body) < length:
        body += sock.recv(65536)
    return head, body


def test_a_polling_request_of_a_peers_session_is_answered_by_the_peer(master, peer):
    client = connect(master)
    target = f"/socket.io/?EIO=4&transport=polling&sid={SID[2]}"
    client.sendall(get(target))
    head, body = read_response(client)
    assert head.startswith(b"HTTP/1.1 200") and body == f"peer saw {target}".encode()
    client.sendall(f"POST {target} HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n4ping"
                   .encode())
    assert read_response(client)[1] == b"5 bytes"
    [seen] = peer.connections  # both requests on one kept-alive connection
    assert seen.source[0] == "127.0.0.11"  # from our advertised address
    assert seen.client == client.getsockname()[:2]  # the client's own, in PROXY v2
    assert [(method, headers[b"x-sticky-cluster-hop"], body)
            for method, _target, headers, body in seen.requests] == [
        (b"GET", b"1", b""), (b"POST", b"1", b"4ping")]
    counted(master, lambda facts: facts["peers"]["2"]["forwards"] == 2, "the forwards counted")
    assert master.hosts["hosts"]["2"] == f"127.0.0.12:{peer.address[1]}"
    assert master.hosts["peers"]["2"]["requests"] == 2 and master.hosts["peers"]["2"]["errors"] == 0


def test_sessions_of_two_hosts_alternating_on_one_connection_reach_each_its_host(
        master, peer, second_peer):
    client = connect(master)
    for round_ in range(3):
        for host, where in ((2, peer), (6, second_peer)):
            target = f"/socket.io/?EIO=4&transport=polling&sid={SID[host]}&round={round_}"
            client.sendall(get(target))
            assert read_response(client)[1] == f"peer saw {target}".encode()
    assert [len(seen.requests) for seen in peer.connections] == [3]  # each kept alive
    assert [len(seen.requests) for seen in second_peer.connections] == [3]


def test_a_chunked_body_is_streamed_to_the_peer(master, peer):
    client = connect(master)
    client.sendall(f"POST /socket.io/?sid={SID[2]} HTTP/1.1\r\nHost: x\r\n"
                   "Transfer-Encoding: chunked\r\n\r\n".encode())
    for piece in (b"a" * 70000, b"b" * 10):
        client.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
    client.sendall(b"0\r\n\r\n")
    assert read_response(client)[1] == b"70010 bytes"


def test_a_websocket_upgrade_is_relayed_both_ways(master, peer):
    client = connect(master)
    client.sendall(get(f"/socket.io/?EIO=4&transport=websocket&sid={SID[2]}",
                       "Connection: Upgrade\r\nUpgrade: websocket\r\n"
                       "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                       "Sec-WebSocket-Version: 13\r\n") + b"early bytes")
    data = b""
    while b"early bytes" not in data:
        data += client.recv(65536)
    assert data.startswith(b"HTTP/1.1 101 ")
    for size in (1, 1000, 300_000):
        message = os.urandom(size)
        client.sendall(message)
        echoed = b""
        while len(echoed) < size:
            echoed += client.recv(65536)
        assert echoed == message
    client.close()
    counted(master, lambda facts: facts["peers"]["2"]["upgrades"] == 1, "the upgrade counted")


def test_a_websocket_the_client_does_not_read_holds_the_peer_back(master, peer):
    """Backpressure: while the client reads nothing, the peer can send no more than the
    buffers on the way hold (a few MB of sockets, 64 KiB in the forwarder), never its
    whole flood; once the client reads, every byte arrives."""
    client = connect(master)
    client.sendall(get(f"/socket.io/?transport=websocket&flood=1&sid={SID[2]}",
                       "Connection: Upgrade\r\nUpgrade: websocket\r\n"))
    progress = []

    def stalled() -> bool:
        progress.append(peer.flooded)
        return len(progress) > 10 and progress[-1] == progress[-11] > 0

    wait_for(stalled, 30, what="the peer to be held back")
    assert peer.flooded < FLOOD / 4
    head = b""
    while b"\r\n\r\n" not in head:
        head += client.recv(1)
    assert head.startswith(b"HTTP/1.1 101 ")
    received = 0
    while received < FLOOD:
        chunk = client.recv(1 << 20)
        assert chunk
        received += len(chunk)
    assert received == FLOOD


def read_request(sock: socket.socket) -> bytes:
    """One request head (and nothing after it) from ``sock``, as a worker reads it."""
    data = b""
    while not data.endswith(b"\r\n\r\n"):
        chunk = sock.recv(1)
        assert chunk, f"closed after {data!r}"
        data += chunk
    return data


def test_requests_of_this_hosts_sessions_go_to_their_workers_on_connections_kept_for_them(
        master, peer):
    """A balancer's connection carries sessions of every host: once in the forwarder it
    stays there. Each of this host's workers gets its sessions' requests on a connection
    of its own, handed over once (with the client's address and the first request, as
    the master hands a worker any client), never with the requests of another."""
    client = connect(master)
    peers_target = f"/socket.io/?EIO=4&transport=polling&sid={SID[2]}"
    workers: dict[str, socket.socket] = {}
    for round_ in range(3):
        client.sendall(get(peers_target))
        assert read_response(client)[1] == f"peer saw {peers_target}".encode()
        for sid in (SID[1], OUR_WORKER_8):
            request = (f"POST /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\n"
                       f"Host: x\r\nContent-Length: 6\r\n\r\n4r{round_}abc").encode()
            client.sendall(request)
            if sid not in workers:  # a new connection to that worker, through the master
                payload, fd = master.wait_for(Kind.HANDBACK)
                assert frames.split_resumed(payload) == (client.getsockname()[:2], request)
                workers[sid] = socket.socket(fileno=fd)
                assert workers[sid].family == socket.AF_UNIX
            else:  # the same one: the worker reads the request on it
                worker = workers[sid]
                assert read_request(worker) + worker.recv(6, socket.MSG_WAITALL) == request
            answer = f"{sid[:4]} round {round_}".encode()
            workers[sid].sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s"
                                 % (len(answer), answer))
            assert read_response(client)[1] == answer
    assert [len(seen.requests) for seen in peer.connections] == [3]
    counted(master, lambda facts: facts["own"]["requests"] == 6, "the relayed requests counted")
    assert master.hosts["own"]["errors"] == 0 and "3" not in master.hosts["peers"]


def test_a_worker_that_closes_its_connection_gets_the_next_request_on_a_new_one(master):
    client = connect(master)
    target = f"/socket.io/?EIO=4&transport=polling&sid={SID[1]}"
    for _attempt in range(2):
        client.sendall(get(target))
        payload, fd = master.wait_for(Kind.HANDBACK)
        assert frames.split_resumed(payload)[1] == get(target)
        with socket.socket(fileno=fd) as worker:  # answers, then closes (its keep-alive ends)
            worker.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        assert read_response(client)[1] == b"ok"


def kept_worker(master: ForwarderProcess, client: socket.socket, target: str) -> socket.socket:
    """The worker's connection for ``target``'s sid, after one request and response on
    ``client`` (its later requests are relayed from the forwarder's read callbacks)."""
    client.sendall(get(target))
    _payload, fd = master.wait_for(Kind.HANDBACK)
    worker = socket.socket(fileno=fd)
    worker.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst")
    assert read_response(client)[1] == b"first"
    return worker


def test_on_a_kept_connection_pipelined_requests_get_their_responses_in_order(master):
    """Two requests in one write; the first response in two writes, the second over
    64 KiB: each whole, in order, the second streamed."""
    client = connect(master)
    target = f"/socket.io/?EIO=4&transport=polling&sid={SID[1]}"
    worker = kept_worker(master, client, target)
    client.sendall(get(target + "&n=1") + get(target + "&n=2"))
    assert read_request(worker) == get(target + "&n=1")
    worker.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n")
    worker.sendall(b"one")
    assert read_response(client)[1] == b"one"
    assert read_request(worker) == get(target + "&n=2")
    big = b"x" * 200_000
    worker.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(big), big))
    assert read_response(client)[1] == big
    client.sendall(get(target + "&n=3"))
    assert read_request(worker) == get(target + "&n=3")


def test_on_a_kept_connection_a_worker_that_does_not_answer_in_time_gets_502(master):
    client = connect(master)
    client.settimeout(5)  # well past the forwarder's 1 s header timeout
    target = f"/socket.io/?EIO=4&transport=polling&sid={SID[1]}"
    worker = kept_worker(master, client, target)
    client.sendall(get(target))
    assert read_request(worker) == get(target)
    assert read_to_eof(client).startswith(b"HTTP/1.1 502 Bad Gateway\r\n")
    counted(master, lambda facts: facts["refused"]["unanswered"] == 1,
            "the unanswered request counted")
    worker.close()


def test_on_a_kept_connection_a_head_cut_short_is_closed_after_the_header_timeout(master):
    client = connect(master)
    client.settimeout(5)  # well past the forwarder's 1 s header timeout
    target = f"/socket.io/?EIO=4&transport=polling&sid={SID[1]}"
    worker = kept_worker(master, client, target)
    client.sendall(get(target)[:30])
    assert read_to_eof(client) == b""
    worker.close()


@pytest.mark.parametrize("next_target, extra", [
    ("/socket.io/?EIO=4&transport=polling", ""),  # a handshake: the master places it
    (f"/socket.io/?EIO=4&transport=websocket&sid={SID[1]}", UPGRADE)])  # served by the worker
def test_the_next_request_for_this_host_is_handed_back_with_exactly_its_bytes(
        master, peer, next_target, extra):
    client = connect(master)
    client.sendall(get(f"/socket.io/?sid={SID[2]}"))
    assert read_response(client)[0].startswith(b"HTTP/1.1 200")
    request = (f"POST {next_target} HTTP/1.1\r\nHost: x\r\n{extra}Content-Length: 4\r\n"
               "\r\n4abc").encode()
    client.sendall(request)
    payload, fd = master.wait_for(Kind.HANDBACK)
    assert frames.split_resumed(payload) == (client.getsockname()[:2], request)
    handed = socket.socket(fileno=fd)  # the very client connection: answer it from "a worker"
    handed.sendall(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
    handed.close()
    assert read_to_eof(client) == b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"


@pytest.mark.parametrize("guarded_master, family", [
    ("127.0.0.9", socket.AF_INET),  # the client connection itself, back to the master
    (f"127.0.0.9,{CLIENT_IP}", socket.AF_UNIX)], indirect=["guarded_master"])
def test_this_hosts_requests_are_relayed_only_for_a_peer_trusted_with_x_forwarded(
        guarded_master, peer, family):
    """The worker would believe a socket pair's X-Forwarded-* as a local peer's: a client
    connection whose peer --forwarded-allow-ips does not name goes to the worker itself
    (one it names is relayed, on a socket pair)."""
    client = connect(guarded_master)
    client.sendall(get(f"/socket.io/?sid={SID[2]}"))
    assert read_response(client)[0].startswith(b"HTTP/1.1 200")
    ours = get(f"/socket.io/?sid={SID[1]}", "X-Forwarded-Proto: https\r\n")
    client.sendall(ours)
    payload, fd = guarded_master.wait_for(Kind.HANDBACK)
    assert frames.split_resumed(payload) == (client.getsockname()[:2], ours)
    with socket.socket(fileno=fd) as handed:
        assert handed.family == family
        handed.sendall(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
    assert read_to_eof(client) == b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"


def test_a_connection_that_comes_back_after_a_hand_back_finds_its_peer_connection_again(
        master, peer):
    """A balancer's kept-alive connection that a handshake sent back to this host's
    workers: when it comes back, its requests for the peer go on the connection to the
    peer it had (no new connection, no new PROXY header)."""
    client = connect(master)
    peers_target = f"/socket.io/?sid={SID[2]}"
    client.sendall(get(peers_target))
    assert read_response(client)[0].startswith(b"HTTP/1.1 200")
    ours = get("/socket.io/?EIO=4&transport=polling")
    client.sendall(ours)
    payload, fd = master.wait_for(Kind.HANDBACK)
    address, data = frames.split_resumed(payload)
    assert data == ours
    # as this host's worker would: answer the request, then the connection comes back
    # (the master resumes it to the forwarder with the next request, read by the worker)
    handed = socket.socket(fileno=fd)
    handed.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nours")
    assert read_response(client)[1] == b"ours"
    client.sendall(get(peers_target))
    request = b""
    while not request.endswith(b"\r\n\r\n"):
        request += handed.recv(65536)
    master.hand_off(handed, address, request)
    assert read_response(client)[1] == f"peer saw {peers_target}".encode()
    [seen] = peer.connections
    assert len(seen.requests) == 2 and seen.client == client.getsockname()[:2]


def test_a_resumed_connection_serves_the_bytes_the_master_read_first(master, peer):
    request = get(f"/socket.io/?EIO=4&transport=polling&sid={SID[2]}")
    client = connect(master, read=request[:20], sent=request)
    assert read_response(client)[0].startswith(b"HTTP/1.1 200")


def test_a_host_not_in_the_directory_gets_engineios_400_at_once(master):
    client = connect(master)
    client.sendall(get(f"/socket.io/?EIO=4&transport=polling&sid={SID[9]}"))
    answer = read_to_eof(client)
    assert answer.startswith(b"HTTP/1.1 400 BAD REQUEST\r\n")
    assert answer.endswith(b"\r\n\r\n" + json.dumps(f"Invalid session {SID[9]}").encode())
    counted(master, lambda facts: facts["refused"]["unknown_host"] == 1, "the refusal counted")
    assert master.log().count("a request for host 9, which is not in the directory") == 1


@pytest.mark.parametrize("sid, extra", [(SID[2], "X-Sticky-Cluster-Hop: 3\r\n"), (SID[5], "")])
def test_a_forward_loop_gets_502_and_is_never_forwarded(master, peer, sid, extra):
    client = connect(master)
    client.sendall(get(f"/socket.io/?sid={sid}", extra))
    assert read_to_eof(client).startswith(b"HTTP/1.1 502 Bad Gateway\r\n")
    assert peer.connections == []
    counted(master, lambda facts: facts["refused"]["loop"] == 1, "the loop counted")


def test_a_peer_that_never_answers_gets_502_within_the_header_timeout(master, silent):
    client = connect(master)
    client.settimeout(5)  # well past the forwarder's 1 s header timeout
    client.sendall(get(f"/socket.io/?sid={SID[4]}"))
    assert read_to_eof(client).startswith(b"HTTP/1.1 502 Bad Gateway\r\n")
    counted(master, lambda facts: facts["refused"]["unanswered"] == 1,
            "the unanswered forward counted")
    assert master.hosts["peers"]["4"]["errors"] == 1
    assert "host 4 at 127.0.0.14" in master.log() and "gave no answer in 1 s" in master.log()


def test_a_dead_host_gets_400_at_once(master):
    client = connect(master)
    client.sendall(get(f"/socket.io/?sid={SID[3]}"))
    answer = read_to_eof(client)
    assert answer.startswith(b"HTTP/1.1 400 BAD REQUEST\r\n")
    assert answer.endswith(json.dumps(f"Invalid session {SID[3]}").encode())  # engineio's
    counted(master, lambda facts: facts["peers"]["3"]["errors"] == 1, "the dead host counted")
    assert "host 3 at 127.0.0.13" in master.log() and "cannot be reached" in master.log()


def test_a_head_over_16_kib_gets_431_and_is_closed(master):
    client = connect(master)
    client.sendall(b"GET /socket.io/?sid=" + SID[2].encode() + b" HTTP/1.1\r\n"
                   + b"X-Big: " + b"a" * 100_000 + b"\r\n\r\n")
    assert read_to_eof(client).startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")


def test_a_connection_over_the_limit_gets_503_at_once_and_the_others_are_served(
        small_master, peer):
    held = [connect(small_master) for _ in range(2)]
    for client in held:
        client.sendall(get(f"/socket.io/?sid={SID[2]}"))
        assert read_response(client)[0].startswith(b"HTTP/1.1 200 ")
    extra = connect(small_master)
    extra.sendall(get(f"/socket.io/?sid={SID[2]}"))
    assert read_to_eof(extra).startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    wait_for(lambda: "one more answered 503" in small_master.log(), 5, what="the log line")
    held[0].sendall(get(f"/socket.io/?sid={SID[2]}"))  # kept alive: served on
    assert read_response(held[0])[0].startswith(b"HTTP/1.1 200 ")
    held[1].close()
    wait_for(lambda: Heartbeat.parse(small_master.wait_for(Kind.HEARTBEAT)[0]).sessions == 1,
             5, what="a heartbeat with one connection")
    again = connect(small_master)  # a place is free again
    again.sendall(get(f"/socket.io/?sid={SID[2]}"))
    assert read_response(again)[0].startswith(b"HTTP/1.1 200 ")


def test_heartbeats_count_the_open_connections(master, peer):
    client = connect(master)
    client.sendall(get(f"/socket.io/?sid={SID[2]}"))
    read_response(client)
    wait_for(lambda: Heartbeat.parse(master.wait_for(Kind.HEARTBEAT)[0]).sessions == 1, 5,
             what="a heartbeat with one connection")
    client.close()
    wait_for(lambda: Heartbeat.parse(master.wait_for(Kind.HEARTBEAT)[0]).sessions == 0, 5,
             what="a heartbeat with none")


def test_the_forwarder_exits_when_its_master_is_gone(master):
    master.channel.close()
    master.proc.wait(10)
    assert master.proc.returncode == 0


def test_drain_finishes_the_open_connections_then_exits(master, peer):
    client = connect(master)
    frames.send_packet(master.channel, frames.header(Kind.DRAIN))
    client.sendall(get(f"/socket.io/?sid={SID[2]}"))
    assert read_response(client)[0].startswith(b"HTTP/1.1 200")
    client.close()
    master.proc.wait(10)
    assert master.proc.returncode == 0


@pytest.mark.parametrize("sent", [b"", f"GET /socket.io/?sid={SID[2]} HTTP/1.1\r\n".encode()])
def test_a_head_not_sent_within_the_header_timeout_is_closed(master, sent):
    client = connect(master)
    client.settimeout(5)  # well past the forwarder's 1 s header timeout
    client.sendall(sent)
    assert read_to_eof(client) == b""


def test_drain_closes_an_idle_kept_alive_connection_at_once(master, peer):
    """Idle for the next request, it would wait 5 s (the keep-alive timeout); drained, it
    is closed without waiting, and the forwarder exits."""
    client = connect(master)
    client.sendall(get(f"/socket.io/?sid={SID[2]}"))
    read_response(client)
    frames.send_packet(master.channel, frames.header(Kind.DRAIN))
    client.settimeout(4)
    assert read_to_eof(client) == b""
    master.proc.wait(4)
    assert master.proc.returncode == 0


def test_with_redis_the_directory_comes_and_goes_and_the_entry_is_given_up(
        tmp_path, redis_server, peer):
    """The forwarder renews this host's entry and reads the others': a peer that leaves
    the directory gets 400 a refresh later; when the master is gone, the entry goes."""
    from cluster.hosts import directory, lease
    from cluster.hosts.addresses import LEASE_MS, format_address, key_of

    channel, me = f"fwd-{uuid.uuid4().hex[:8]}", ("127.0.0.11", free_port("127.0.0.11"))
    assert lease.claim(redis_server.url, channel, me, 1) == 1
    redis_server.client().set(key_of(channel, 2), format_address(peer.address), px=LEASE_MS)
    config = ForwarderConfig(host_id=1, advertise=me, adapter=redis_server.url, channel=channel,
                             header_timeout=1.0, heartbeat_interval=0.2)
    forwarder = ForwarderProcess(config, tmp_path / "forwarder.log")
    try:
        forwarder.wait_for(Kind.READY)
        client = connect(forwarder)
        client.sendall(get(f"/socket.io/?sid={SID[2]}"))
        assert read_response(client)[0].startswith(b"HTTP/1.1 200")
        redis_server.client().delete(key_of(channel, 2))
        counted(forwarder, lambda facts: facts["hosts"] == {"1": format_address(me)},
                "host 2 to leave the directory")
        client.sendall(get(f"/socket.io/?sid={SID[2]}"))
        assert read_to_eof(client).startswith(b"HTTP/1.1 400 BAD REQUEST\r\n")
        forwarder.channel.close()
        forwarder.proc.wait(10)
        assert directory.read(redis_server.url, channel) == {}
    finally:
        forwarder.stop()


def test_a_forwarder_killed_9_leaves_the_directory_a_lease_later(tmp_path, redis_server):
    """Its entry, renewed while it lived, lapses: other hosts answer its sids 400."""
    from cluster.hosts import directory, lease
    from cluster.hosts.addresses import LEASE_MS

    channel, me = f"fwd-{uuid.uuid4().hex[:8]}", ("127.0.0.11", free_port("127.0.0.11"))
    host_id = lease.claim(redis_server.url, channel, me, None)
    config = ForwarderConfig(host_id=host_id, advertise=me, adapter=redis_server.url,
                             channel=channel, heartbeat_interval=0.2)
    forwarder = ForwarderProcess(config, tmp_path / "forwarder.log")
    try:
        forwarder.wait_for(Kind.READY)
        assert directory.read(redis_server.url, channel) == {host_id: me}
        forwarder.proc.kill()
        forwarder.proc.wait(10)
        wait_for(lambda: directory.read(redis_server.url, channel) == {},
                 LEASE_MS / 1000 + 5, what="the entry to lapse")
    finally:
        forwarder.stop()
