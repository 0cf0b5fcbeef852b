"""The Flask-SocketIO threading quick start, run as written, with python-socketio's Client.

The app and the command are taken from docs/quick-starts.md; the app is written to a new folder as
``app.py`` and served with ``sticky-cluster run app:app --workers 4`` from there. Sync
``socketio.Client``s (threads, requests and websocket-client: polling, then the upgrade)
spread over the workers and hear a broadcast from any of them, through the embedded
relay and through Redis.
"""
from __future__ import annotations

import re
import shlex
import sys
import threading
from pathlib import Path

import pytest
import socketio

from tests.support.masters import ClusterProcess
from tests.support.ports import free_port
from tests.support.waiting import wait_for
from tests.support.pages import page

SECTION = "## Quick start: threading (Flask-SocketIO)"
CLIENTS = 12


def quick_start() -> tuple[str, list[str]]:
    """The app's source and the ``sticky-cluster run`` command of the quick start."""
    text = page("quick-starts")
    section = text[text.index(SECTION):]
    section = section[:section.index("\n## ", 1) if "\n## " in section else None]
    blocks = re.findall(r"```(\w*)\n(.*?)```", section, re.S)
    source = next(code for lang, code in blocks if lang == "python")
    command = next(line for _lang, code in blocks for line in code.splitlines()
                   if line.startswith("sticky-cluster run"))
    return source, shlex.split(command)


@pytest.fixture(params=["relay", "redis"])
def quick_start_cluster(tmp_path, request):
    """The quick start's app under its command (plus a free port; through Redis for ``redis``)."""
    source, command = quick_start()
    assert command[:3] == ["sticky-cluster", "run", "app:app"] and "--workers" in command
    (tmp_path / "app.py").write_text(source, encoding="utf-8")
    port = free_port()
    adapter = ()
    if request.param == "redis":
        adapter = ("--adapter", request.getfixturevalue("redis_server").url,
                   "--channel", "t-quickstart")
    binary = str(Path(sys.executable).parent / "sticky-cluster")
    cluster = ClusterProcess([*command[1:], "--bind", f"127.0.0.1:{port}", *adapter],
                             tmp_path / "master.log", cwd=tmp_path, command=[binary])
    cluster.url = f"http://127.0.0.1:{port}"
    try:
        cluster.wait_log("cluster ready", timeout=90)
        yield cluster
    finally:
        cluster.stop()


def test_the_quick_start_spreads_clients_and_broadcasts_across_workers(quick_start_cluster):
    cluster = quick_start_cluster
    assert cluster.log.count("booting (start)") == 4
    heard: list[list[str]] = [[] for _ in range(CLIENTS)]
    lock = threading.Lock()
    clients = []
    try:
        workers = []
        for index in range(CLIENTS):
            client = socketio.Client(reconnection=False)

            def greeted(text, index=index):
                with lock:
                    heard[index].append(text)

            client.on("greeted", greeted)
            client.connect(cluster.url, wait_timeout=10)
            clients.append(client)
            workers.append(client.call("hello", f"client {index}", timeout=10))
        wait_for(lambda: all(c.transport() == "websocket" for c in clients), 20,
                 what="every client to upgrade")
        assert len(set(workers)) >= 3, workers
        assert set(workers) <= cluster.worker_pids()
        assert all(client.call("hello", "again", timeout=10) == worker
                   for client, worker in zip(clients, workers)), "a client changed worker"
        speaker = workers[0]
        clients[0].call("hello", "the last one", timeout=10)
        expected = f"the last one joined on worker {speaker}"
        wait_for(lambda: all(expected in texts for texts in heard), 20,
                 what="every client, on every worker, to hear the last greeting")
    finally:
        for client in clients:
            client.disconnect()
