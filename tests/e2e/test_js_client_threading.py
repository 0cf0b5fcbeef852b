"""The official JavaScript Socket.IO client against the Flask-SocketIO threading app.

``socket.io-client`` v4 is installed with npm into a temporary folder, as a user would, and
tests/js/threading_clients.js runs there under node against
``sticky-cluster run tests.apps.threading_chat:app --workers 4``: 12 clients with the default
transports (polling, then the upgrade to websocket) and 4 polling-only ones, each from its own
loopback address, ask ``whoami``, join one room and hear one ``shout`` from any worker,
through the embedded relay and through Redis.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.paths import ROOT

pytestmark = pytest.mark.long

SCRIPT = ROOT / "tests" / "js" / "threading_clients.js"
WEBSOCKET_CLIENTS = 12
POLLING_CLIENTS = 4
MESSAGE = "hello from the JavaScript client"


def _tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is not installed: this test needs node and npm (.ci/run installs them)"
    return path


@pytest.fixture(scope="module")
def js_client(tmp_path_factory) -> Path:
    """A folder with socket.io-client v4 installed by npm and the client script beside it."""
    folder = tmp_path_factory.mktemp("js-client")
    _tool("node")
    installed = subprocess.run([_tool("npm"), "install", "--no-audit", "--no-fund",
                                "socket.io-client@4"],
                               cwd=folder, capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, f"npm install socket.io-client@4 failed:\n{installed.stderr}"
    shutil.copy(SCRIPT, folder / SCRIPT.name)
    return folder


@pytest.mark.parametrize("broker", ["relay", "redis"])
def test_js_clients_spread_over_workers_and_hear_a_broadcast(js_client, start_cluster, broker,
                                                             request):
    args: tuple = ()
    if broker == "redis":
        args = ("--adapter", request.getfixturevalue("redis_server").url,
                "--channel", "t-js-threading")
    cluster = start_cluster("tests.apps.threading_chat:app", workers=4, args=args)
    run = subprocess.run([_tool("node"), SCRIPT.name, cluster.url, str(WEBSOCKET_CLIENTS),
                          str(POLLING_CLIENTS)],
                         cwd=js_client, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, f"the JS clients failed:\n{run.stderr}\n{cluster.log}"
    results = json.loads(run.stdout)
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
    assert [client["whoami"]["remote_addr"] for client in clients] == \
        [client["address"] for client in clients], "the app saw other source addresses"

    assert [client["heard"] for client in clients] == [1] * len(clients), \
        "not every client heard the broadcast exactly once"
    assert all(client["echoes"] == [f"echo {i}" for i in range(5)] for client in polling)
