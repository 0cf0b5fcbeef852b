"""The quick start: ``make demo`` serves the chat page, offline, and its chat crosses workers.

The tests only connect clients: one ``make demo`` serves them all (one ``xdist_group``).
"""
from __future__ import annotations

import asyncio
import contextlib
import queue
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import psutil
import pytest
import requests

from tests.support.clients import connected, run, source_address
from tests.support.masters import ClusterProcess
from tests.support.paths import ROOT
from tests.support.ports import free_port

VENV = Path(sys.executable).parent.parent

pytestmark = pytest.mark.xdist_group("demo")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """``make demo`` on a free port (the install step taken as done: this venv is it)."""
    port = free_port()
    cluster = ClusterProcess(["-s", "-o", "install", "demo", f"DEMO_BIND=127.0.0.1:{port}",
                              f"VENV={VENV}"], tmp_path_factory.mktemp("demo") / "demo.log",
                             command=["make"])
    cluster.url = f"http://127.0.0.1:{port}"
    try:
        cluster.wait_log("cluster ready", timeout=60)
        yield cluster
    finally:
        for master in psutil.Process(cluster.pid).children():  # make's child: the master
            master.send_signal(signal.SIGINT)
            master.wait(15)
        cluster.stop()


def test_the_demo_serves_its_page_and_the_client_from_itself(demo):
    page = requests.get(demo.url + "/", timeout=10)
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    sources = re.findall(r'<script[^>]*\bsrc="([^"]+)"', page.text)
    assert sources, "the page loads no script"
    assert not re.search(r"(https?:)?//", page.text.split("<script>")[0]), "the page loads from outside"
    for source in sources:
        assert source.startswith("/") and not source.startswith("//"), source
        script = requests.get(demo.url + source, timeout=10)
        assert script.status_code == 200, source
        assert "javascript" in script.headers["Content-Type"]
        assert script.text.startswith("/*!\n * Socket.IO v4"), source


def test_the_demo_chat_crosses_workers(demo):
    said, heard = run(_chat_on_two_workers(demo.url))
    assert heard == {"text": "hello from the other worker", "worker": said}


async def _chat_on_two_workers(url: str) -> tuple[int, dict]:
    async with contextlib.AsyncExitStack() as stack:
        by_worker: dict[int, tuple] = {}
        for index in range(40):
            if len(by_worker) == 2:
                break
            joined: asyncio.Queue = asyncio.Queue()
            inbox: asyncio.Queue = asyncio.Queue()
            client = await stack.enter_async_context(connected(
                url, source_address(800 + index),
                handlers={"joined": joined.put_nowait, "said": inbox.put_nowait}))
            worker = (await asyncio.wait_for(joined.get(), 10))["worker"]
            by_worker.setdefault(worker, (client, inbox))
        assert len(by_worker) == 2, "every client landed on one worker"
        (speaker_pid, (speaker, _)), (_, (_listener, inbox)) = by_worker.items()
        await speaker.emit("say", "hello from the other worker")
        return speaker_pid, await asyncio.wait_for(inbox.get(), 10)


def test_the_terminal_client_says_which_worker_and_prints_the_room(demo):
    client = subprocess.Popen([sys.executable, "-m", "examples.chat_client", demo.url], cwd=ROOT,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in client.stdout], daemon=True).start()
    try:
        first = lines.get(timeout=20)
        worker = re.match(r"served by worker (\d+);", first)
        assert worker, first
        client.stdin.write("hi from a terminal\n")
        client.stdin.flush()
        assert lines.get(timeout=20).strip() == f"[worker {worker[1]}, yours] hi from a terminal"
        client.stdin.close()
        assert client.wait(20) == 0
    finally:
        if client.poll() is None:
            client.kill()
            client.wait(5)
