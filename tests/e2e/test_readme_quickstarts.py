"""The quick starts of the docs (docs/quick-starts.md) run as pasted.

Each ``## Quick start: …`` section that shows an ``# app.py`` is pasted into an empty
directory, and started there with the ``sticky-cluster run`` line the section shows (its
size set to 2 workers and its address to a free loopback port). A real Socket.IO client
then connects (polling handshake, upgrade to websocket) and, where the app has a ``ping``
event, calls it.
"""
from __future__ import annotations

import re
import shlex
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.support.clients import connected, run, source_address, wait_upgraded
from tests.support.masters import ClusterProcess
from tests.support.ports import free_port
from tests.support.pages import page

QUICK_STARTS = page("quick-starts")
SECTION = re.compile(r"^## (Quick start: .+?)\n(.*?)(?=^## |\Z)", re.S | re.M)
APP_FILE = re.compile(r"^```python\n(# app\.py\n.*?)^```\n", re.S | re.M)
COMMAND = re.compile(r"sticky-cluster run ([^`\n]+)")


def quick_starts() -> dict[str, tuple[str, list[str]]]:
    """Title -> (the app.py shown, the arguments of its ``sticky-cluster run``)."""
    found = {}
    for title, body in SECTION.findall(QUICK_STARTS):
        app = APP_FILE.search(body)
        if app is None:
            continue
        command = COMMAND.search(body)
        assert command, f"{title}: no sticky-cluster run line"
        found[title] = (app[1], shlex.split(command[1]))
    return found


def test_every_quick_start_with_an_app_is_run_here():
    assert set(quick_starts()) == {"Quick start: FastAPI", "Quick start: plain ASGI",
                                   "Quick start: aiohttp",
                                   "Quick start: gevent (Flask-SocketIO)",
                                   "Quick start: threading (Flask-SocketIO)"}


def as_run_here(args: list[str], port: int) -> list[str]:
    """The page's arguments with 2 workers and a loopback address of the test's."""
    out = []
    for before, arg in zip(["", *args], args):
        if arg not in ("--workers", "-w", "--bind", "-b") and before not in (
                "--workers", "-w", "--bind", "-b"):
            out.append(arg)
    return ["run", *out, "--workers", "2", "--bind", f"127.0.0.1:{port}"]


async def connect_and_ping(url: str, source: str, app_text: str) -> None:
    async with connected(url, source) as client:
        await wait_upgraded(client)
        if "def ping(" in app_text:
            assert await client.call("ping", {}, timeout=10) == "pong"


@pytest.mark.parametrize("title", sorted(quick_starts()))
def test_quick_start_runs_as_pasted(title, tmp_path):
    app_text, args = quick_starts()[title]
    assert args[0].startswith("app:"), args
    (tmp_path / "app.py").write_text(app_text)
    port = free_port()
    program = Path(sys.executable).parent / "sticky-cluster"
    cluster = ClusterProcess(as_run_here(args, port), tmp_path / "master.log", cwd=tmp_path,
                             command=[str(program)])
    try:
        cluster.wait_log("cluster ready", timeout=90)
        url = f"http://127.0.0.1:{port}"
        run(connect_and_ping(url, source_address(40), app_text))
        if "other_asgi_app=site" in app_text:  # the other ASGI app serves the rest
            with urllib.request.urlopen(f"{url}/", timeout=10) as answer:
                assert answer.read() == b"hello"
    finally:
        cluster.stop()
    assert "Traceback" not in cluster.log, cluster.log[-3000:]
