"""The official JavaScript Socket.IO client against the Flask-SocketIO threading app.

``socket.io-client`` v4 is installed with npm into a temporary folder, as a user would
(:mod:`tests.support.jsclient`), and tests/js/threading_clients.js runs there under node against
``sticky-cluster run tests.apps.threading_chat:app --workers 4``: 12 clients with the default
transports (polling, then the upgrade to websocket) and 4 polling-only ones, each from its own
loopback address, ask ``whoami``, join one room and hear one ``shout`` from any worker,
through the embedded relay and through Redis.
"""
from __future__ import annotations

import pytest

from tests.support.jsclient import run_clients

pytestmark = pytest.mark.long

WEBSOCKET_CLIENTS = 12
POLLING_CLIENTS = 4
MESSAGE = "hello from the JavaScript client"


@pytest.mark.parametrize("broker", ["relay", "redis"])
def test_js_clients_spread_over_workers_and_hear_a_broadcast(js_client, start_cluster, broker,
                                                             request):
    args: tuple = ()
    if broker == "redis":
        args = ("--adapter", request.getfixturevalue("redis_server").url,
                "--channel", "t-js-threading")
    cluster = start_cluster("tests.apps.threading_chat:app", workers=4, args=args)
    results = run_clients(js_client, cluster.url, WEBSOCKET_CLIENTS, POLLING_CLIENTS,
                          log=cluster.log)
    clients = results["clients"]
    assert len(clients) == WEBSOCKET_CLIENTS + POLLING_CLIENTS
    assert all(client["connected"] for client in clients)
    assert results["shout"] == "ok"

    websocket = [client for client in clients if not client["polling_only"]]
    polling = [client for client in clients if client["polling_only"]]
    assert [client["transport"] for client in websocket] == ["websocket"] * WEBSOCKET_CLIENTS
    assert [client["transport"] for client in polling] == ["polling"] * POLLING_CLIENTS

    pids = {client["whoami"]["pid"] for client in clients}
    assert len(pids) >= 3, pids
    assert pids <= cluster.worker_pids()
    assert [client["whoami_end"]["pid"] for client in clients] == \
        [client["whoami"]["pid"] for client in clients], "a client changed workers"
    assert [client["whoami"]["remote_addr"] for client in clients] == \
        [client["address"] for client in clients], "the app saw other source addresses"

    assert [client["heard"] for client in clients] == [1] * len(clients), \
        "not every client heard the broadcast exactly once"
    assert all(client["echoes"] == [f"echo {i}" for i in range(5)] for client in polling)
