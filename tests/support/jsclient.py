"""The official JavaScript Socket.IO client (``socket.io-client`` v4), installed with npm into
a temporary folder as a user would (the ``js_client`` fixture of tests/e2e/conftest.py), and
tests/js/threading_clients.js run there under node: :func:`run_clients`."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from tests.support.paths import ROOT

SCRIPT = ROOT / "tests" / "js" / "threading_clients.js"


def tool(name: str) -> str:
    """The path of ``name`` (node, npm); fails the test when it is not installed."""
    path = shutil.which(name)
    assert path, f"{name} is not installed: this test needs node and npm (.ci/run installs them)"
    return path


def install(folder: Path) -> Path:
    """socket.io-client v4 installed by npm in ``folder``, the client script beside it."""
    tool("node")
    installed = subprocess.run([tool("npm"), "install", "--no-audit", "--no-fund",
                                "socket.io-client@4"],
                               cwd=folder, capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, f"npm install socket.io-client@4 failed:\n{installed.stderr}"
    shutil.copy(SCRIPT, folder / SCRIPT.name)
    return folder


def run_clients(folder: Path, url: str, websocket: int, polling: int, first_source: int = 2,
                log: str = "") -> dict:
    """Run the script against ``url``: ``websocket`` clients with the default transports and
    ``polling`` polling-only ones from 127.0.0.``first_source`` on; its results."""
    done = subprocess.run([tool("node"), SCRIPT.name, url, str(websocket), str(polling),
                           str(first_source)],
                          cwd=folder, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"the JS clients failed:\n{done.stderr}\n{log}"
    return json.loads(done.stdout)
