"""The threading worker's websockets, with python-socketio's Client against a real cluster.

A websocket is read by the request thread that waits for its messages: an idle client
holds that thread, Engine.IO's writer and its ping task, and no reader thread besides
(simple-websocket's, which the worker used before, made four); the events it sends run
on reused threads, so a client that keeps talking adds none.
"""
from __future__ import annotations

import psutil
import socketio

from tests.support.waiting import wait_for

APP = "tests.apps.threading_chat:app"
CLIENTS = 20
THREADS_PER_CLIENT = 3
"""The request thread (the websocket), Engine.IO's writer, its ping task."""


def connect(url: str) -> socketio.Client:
    client = socketio.Client(reconnection=False)
    client.connect(url, transports=["websocket"], wait_timeout=20)
    return client


def test_an_idle_websocket_holds_three_threads_and_its_events_reuse_threads(start_cluster):
    cluster = start_cluster(APP, workers=1)
    (pid,) = wait_for(cluster.worker_pids, 30, what="the worker")
    worker = psutil.Process(pid)
    url = f"http://127.0.0.1:{cluster.port}"
    clients = [connect(url)]
    try:
        assert clients[0].call("echo", "warm", timeout=20) == "warm"
        before = worker.num_threads()
        for index in range(CLIENTS):
            client = connect(url)
            clients.append(client)
            assert client.call("echo", index, timeout=20) == index
        grown = worker.num_threads() - before
        assert grown <= CLIENTS * THREADS_PER_CLIENT + 5, f"{grown} threads for {CLIENTS} clients"
        names = {client.call("thread_name", timeout=20)  # one event after another
                 for _round in range(20) for client in clients[1:]}
        assert len(names) <= 10, f"400 events ran on {len(names)} threads"
    finally:
        for client in clients:
            client.disconnect()
