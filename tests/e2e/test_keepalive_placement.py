"""New sessions on a kept-alive connection are placed like any new session, end to end: a
real cluster, in every worker runtime, with one real keep-alive HTTP/1.1 connection that
opens six Socket.IO sessions. (The decision, on request lines and on a fake pool:
tests/unit/cluster/test_keepalive_placement.py.)
"""
from __future__ import annotations

import collections
import json

from cluster.protocol.sids import tag_of
from tests.support.clients import source_address
from tests.support.rawclient import KeepAlive

SESSIONS = 6


def open_sessions_on_one_connection(port: int, source: str) -> list[str]:
    """Open :data:`SESSIONS` Socket.IO sessions one after the other on one kept-alive
    connection (as tabs of one browser do), each connected to its namespace and answering
    an event; their Engine.IO sids."""
    conn = KeepAlive(port, source)  # fails if the connection is ever closed and reopened
    sids = []
    try:
        for ack in range(SESSIONS):
            status, body = conn.request("GET", None)
            assert status == 200 and body.startswith("0{"), (status, body)
            sid = json.loads(body[1:])["sid"]
            assert conn.request("POST", sid, "40") == (200, "OK")
            status, body = conn.request("GET", sid)
            assert status == 200 and body.startswith("40{"), (status, body)
            assert conn.request("POST", sid, f'42{ack}["whoami"]') == (200, "OK")
            status, body = conn.request("GET", sid)
            assert status == 200 and f"43{ack}[" in body, (status, body)
            sids.append(sid)
    finally:
        conn.close()
    return sids


def test_new_sessions_on_one_kept_alive_connection_spread(start_cluster, app_target):
    cluster = start_cluster(app_target, workers=3)
    sids = open_sessions_on_one_connection(cluster.port, source_address(11))
    by_worker = collections.Counter(tag_of(sid) for sid in sids)
    assert len(by_worker) >= 2, f"{SESSIONS} sessions on one connection, by worker: {by_worker}"
    cluster.stop()
    assert "Traceback" not in cluster.log, cluster.log[-3000:]


def test_balance_ip_keeps_a_connection_s_new_sessions_where_it_is(start_cluster):
    """With ``--balance ip`` a new session goes where the client's address does: the
    connection's worker, without a trip through the master."""
    cluster = start_cluster(workers=3, args=("--balance", "ip"))
    sids = open_sessions_on_one_connection(cluster.port, source_address(12))
    assert len({tag_of(sid) for sid in sids}) == 1
