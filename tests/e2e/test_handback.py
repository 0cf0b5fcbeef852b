"""Routing per request: a keep-alive connection that carries requests of sessions owned
by different workers has each request served by its owner (the worker hands the
connection back to the master with the bytes it read; the master passes both on).

A real cluster and real keep-alive HTTP connections, in every worker runtime: the tests
that only connect clients share one two-worker cluster per runtime (an ``xdist_group``
each), whose logged routing totals must, when it stops, count the hand-backs its status
counted. The decision a worker makes on each request line, pure:
tests/unit/workers/test_handback.py.
"""
from __future__ import annotations

import json
import re

import pytest

from tests.support.clients import source_address
from tests.support.masters import RUNTIME_TARGETS, shared_cluster
from tests.support.rawclient import KeepAlive, two_sessions_on_two_workers
from cluster.protocol.sids import sid_prefix, make_sid, tag_of


@pytest.fixture(scope="module", params=[
    pytest.param(target, id=name, marks=pytest.mark.xdist_group(f"handback-{name}"))
    for name, target in RUNTIME_TARGETS.items()])
def cluster(request, tmp_path_factory):
    """Two workers of one runtime's chat app, for the tests of this module that share it."""
    with shared_cluster(tmp_path_factory.mktemp("handback") / "master.log", request.param,
                        workers=2) as cluster:
        yield cluster
        last = handed_back(cluster)
    totals = re.search(r"routing totals: .*?(\d+) handed back \((\d+) µs CPU each\)", cluster.log)
    assert totals and int(totals[1]) == last, cluster.log[-2000:]


def handed_back(cluster) -> int:
    """Connections handed back to the master so far, by its status."""
    return cluster.status()["handoffs"]["handed_back"]


def ack_payload(body: str, ack: int) -> dict:
    match = re.search(rf"43{ack}(\[.*?\])(\x1e|$)", body)
    assert match, body
    return json.loads(match[1])[0]


def test_one_keep_alive_connection_carries_two_sessions_of_two_workers(cluster):
    before = handed_back(cluster)
    first, second = two_sessions_on_two_workers(cluster.port)
    conn = KeepAlive(cluster.port, source_address(1))
    answers = []
    try:
        for sid in (first, second):  # connect the Socket.IO namespace of each, alternating
            answers.append(conn.request("POST", sid, "40"))
        for sid in (first, second):
            status, body = conn.request("GET", sid)
            assert status == 200 and body.startswith("40{"), (status, body)
        pids = {}
        for ack in range(6):  # alternate: first, second, first, …
            sid = (first, second)[ack % 2]
            answers.append(conn.request("POST", sid, f'42{ack}["whoami"]'))
            status, body = conn.request("GET", sid)
            assert status == 200, (status, body)
            who = ack_payload(body, ack)
            assert who["sid"] != sid  # the Socket.IO sid, made by the same worker
            assert tag_of(who["sid"]) == tag_of(sid)
            pids.setdefault(sid, set()).add(who["pid"])
    finally:
        conn.close()
    assert all(answer == (200, "OK") for answer in answers), answers
    assert len(pids[first]) == len(pids[second]) == 1 and pids[first] != pids[second]
    assert handed_back(cluster) - before >= 8


def test_unknown_sid_on_a_kept_alive_connection_is_answered_by_its_worker(start_cluster):
    cluster = start_cluster(workers=2)
    first, _second = two_sessions_on_two_workers(cluster.port)
    conn = KeepAlive(cluster.port, source_address(2))
    try:
        assert conn.request("POST", first, "40") == (200, "OK")
        gone = make_sid(sid_prefix(4000))  # a worker tag no live worker has
        forged = first[:3] + "x" * (len(first) - 3)  # the right worker, a session it never made
        for sid in (gone, forged, gone):
            status, body = conn.request("GET", sid)
            assert status == 400 and "Invalid session" in body, (status, body)
            assert "Traceback" not in body
        status, body = conn.request("GET", first)  # the connection still serves
        assert status == 200 and body.startswith("40{"), (status, body)
    finally:
        conn.close()


def ws_frame(text: str) -> bytes:
    """One masked websocket text frame (as a client sends it), short payloads only."""
    data = text.encode()
    mask = b"\x01\x02\x03\x04"
    return bytes((0x81, 0x80 | len(data))) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data))


def test_websocket_upgrade_of_another_session_on_a_kept_alive_connection(cluster):
    first, second = two_sessions_on_two_workers(cluster.port)
    conn = KeepAlive(cluster.port, source_address(3))
    try:
        assert conn.request("POST", first, "40") == (200, "OK")
        sock = conn.http.sock
        sock.sendall((f"GET /socket.io/?EIO=4&transport=websocket&sid={second} HTTP/1.1\r\n"
                      "Host: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                      "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            assert chunk, head
            head += chunk
        assert head.startswith(b"HTTP/1.1 101"), head
        sock.sendall(ws_frame("2probe"))  # Engine.IO's upgrade probe, answered by the owner
        answer = head.partition(b"\r\n\r\n")[2]
        while b"3probe" not in answer:
            chunk = sock.recv(4096)
            assert chunk, answer
            answer += chunk
    finally:
        conn.close()
