"""The threading worker's websockets, with python-socketio's Client against a real cluster.

A websocket is read by the request thread that waits for its messages: an idle client
holds that thread and Engine.IO's writer, and no reader thread besides (simple-websocket's,
which the worker used before, made four) nor a ping task (its pings are timers of the
worker's poller); the events it sends run on reused threads, so a client that keeps talking
adds none.
"""
from __future__ import annotations

import time

import psutil
import socketio

from tests.support import rawclient
from tests.support.waiting import wait_for

APP = "tests.apps.threading_chat:app"
CLIENTS = 20
THREADS_PER_CLIENT = 2
"""The request thread (the websocket) and Engine.IO's writer."""


def connect(url: str) -> socketio.Client:
    client = socketio.Client(reconnection=False)
    client.connect(url, transports=["websocket"], wait_timeout=20)
    return client


def test_an_idle_websocket_holds_two_threads_and_its_events_reuse_threads(start_cluster):
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


def test_pings_come_every_interval_for_as_long_as_they_are_answered(start_cluster):
    """The websockets of a server that pings every second (from the worker's poller) get
    their pings, one per answer, for as long as they answer them."""
    cluster = start_cluster("tests.apps.threading_chat:quick_pings", workers=1)
    sockets = [rawclient.websocket(cluster.port, f"127.0.0.{2 + index}", timeout=20)
               for index in range(CLIENTS)]
    try:
        for sock in sockets:
            sock.sendall(rawclient.frame(1, b"40"))
            while not rawclient.read_frame(sock)[1].startswith(b"40"):  # after a noop ("6")
                pass
        started = time.monotonic()
        for _cycle in range(4):
            for sock in sockets:
                assert rawclient.read_frame(sock) == (1, b"2")
                sock.sendall(rawclient.frame(1, b"3"))
        took = time.monotonic() - started
        assert took >= 3, f"4 pings of a 1 s interval came within {took:.1f} s"
    finally:
        for sock in sockets:
            sock.close()
