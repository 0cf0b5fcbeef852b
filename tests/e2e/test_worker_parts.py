"""The runtime-neutral worker parts where real time or a real process is the scenario: the
asyncio hand-back fed a request in pieces that arrive apart, and a forked worker whose
channel reader fails. (The rest, on real sockets in one process:
tests/unit/workers/test_worker_parts.py.)"""
from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import socket

import pytest

from cluster.protocol import frames
from cluster.protocol.sids import sid_prefix, make_sid
from tests.support.waiting import wait_for
from tests.support.worker_links import handoff, plain_hub, refuse_client
from workers.asyncio.asgi_server import AsgiConnections, idle
from workers.asyncio.link import AsyncMasterLink
from workers.asyncio.protocol import HandBackProtocol, Routing
from workers.green_link import GreenMasterLink
from workers.limits import HttpLimits


class Recorder(asyncio.Protocol):
    """A server protocol that records what it is fed; ``idle`` is what it says of itself."""

    def __init__(self) -> None:
        self.fed = b""
        self.idle = True
        self.lost = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        self.fed += data

    def connection_lost(self, exc) -> None:
        self.lost.set_result(exc)


def _routing_run(chunks: list[bytes], preface: bytes = b"", busy: bool = False):
    """Serve one real TCP connection through a HandBackProtocol of worker 7; send ``chunks``.

    Returns (what the server protocol was fed, the hand-backs, whether the client's
    connection was still open for the fd handed back).
    """
    async def main():
        handed = []
        routing = Routing(7, lambda fd, address, data: handed.append((os.dup(fd), address, data)),
                          lambda server: server.idle)
        listener = socket.create_server(("127.0.0.1", 0))
        client = socket.create_connection(listener.getsockname())
        served, _ = listener.accept()
        listener.close()
        loop = asyncio.get_running_loop()
        server = Recorder()
        server.idle = not busy
        await loop.connect_accepted_socket(
            lambda: HandBackProtocol(server, server, routing, ("10.0.0.1", 5), preface), served)
        for chunk in chunks:
            client.sendall(chunk)
            await asyncio.sleep(0.05)
        if handed:
            await asyncio.wait_for(server.lost, 10)
        alive = []
        for fd, _address, _data in handed:
            with socket.socket(fileno=fd) as copy:
                copy.sendall(b"from the owner")
                alive.append(client.recv(14) == b"from the owner")
        client.close()
        return server.fed, [(address, data) for _fd, address, data in handed], alive

    return asyncio.run(asyncio.wait_for(main(), 30))


def _get(tag: int) -> bytes:
    """A polling GET of a (new random) session of worker ``tag``."""
    return (f"GET /socket.io/?EIO=4&transport=polling&sid={make_sid(sid_prefix(tag))} HTTP/1.1\r\n"
            "Host: x\r\n\r\n").encode()


def test_a_request_of_another_worker_is_handed_back_with_its_bytes_unfed():
    mine, other = _get(7), _get(9)
    fed, handed, alive = _routing_run([mine, other[:20], other[20:]])
    assert fed == mine
    assert handed == [(("10.0.0.1", 5), other)] and alive == [True]


def test_a_resumed_connection_serves_its_first_request_here_then_hands_back_again():
    first, then = _get(9), _get(11)
    fed, handed, _alive = _routing_run([then], preface=first)
    assert fed == first
    assert handed == [(("10.0.0.1", 5), then)]


def test_a_busy_server_keeps_the_next_request_and_an_upgrade_keeps_the_connection():
    mine, other = _get(7), _get(9)
    fed, handed, _alive = _routing_run([mine, other], busy=True)
    assert fed == mine + other and handed == []  # pipelined: served here
    upgrade = mine.replace(b"\r\n\r\n", b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
    fed, handed, _alive = _routing_run([upgrade, other])
    assert fed == upgrade + other and handed == []  # after an upgrade the bytes are frames


async def _echo_websockets(scope, receive, send) -> None:
    """An ASGI app whose websockets echo every text message (and a lifespan that starts)."""
    if scope["type"] == "lifespan":
        while (message := await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    while (message := await receive())["type"] == "websocket.receive":
        await send({"type": "websocket.send", "text": message["text"]})


def test_a_websocket_keeps_no_http_protocol_alive_and_echoes_through_the_limits():
    """After the upgrade the hand-back steps aside and lets uvicorn's HTTP protocol go (it
    kept it alive: 6 KB per idle websocket); the websocket is still fed through the guard."""
    async def main():
        connections = AsgiConnections(_echo_websockets, 10, HttpLimits(10.0, 5.0, 1_000_000),
                                      1e6, websocket_deflate=False)
        connections.routing = Routing(7, lambda *_: None, idle)
        await connections.start()
        listener = socket.create_server(("127.0.0.1", 0))
        client = socket.create_connection(listener.getsockname())
        served, address = listener.accept()
        listener.close()
        connections.serve(served, address)
        client.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                       b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                       b"Sec-WebSocket-Version: 13\r\n\r\n")
        client.setblocking(False)
        loop = asyncio.get_running_loop()
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += await asyncio.wait_for(loop.sock_recv(client, 4096), 10)
        assert answer.startswith(b"HTTP/1.1 101")
        gc.collect()
        http = connections.config.http_protocol_class
        assert [o for o in gc.get_objects() if isinstance(o, http)] == []
        mask = b"\x01\x02\x03\x04"
        client.sendall(b"\x81\x82" + mask + bytes(c ^ mask[i % 4] for i, c in enumerate(b"hi")))
        echo = b""
        while len(echo) < 4:
            echo += await asyncio.wait_for(loop.sock_recv(client, 4096), 10)
        client.close()
        await connections.stop(5.0)
        return echo

    assert asyncio.run(asyncio.wait_for(main(), 30)) == b"\x81\x02hi"


def _read_in_a_child(link_kind: str, worker_end: socket.socket, stderr: int) -> None:
    """In a forked child: read the channel with a link whose ``on_client`` raises; never return."""
    code = 99
    try:
        logging.getLogger("sticky_cluster.worker").addHandler(
            logging.StreamHandler(open(stderr, "w", closefd=False)))
        if link_kind == "green":
            spawned: list = []
            GreenMasterLink(worker_end, refuse_client, plain_hub(spawned)).start()
            spawned[0]()
        else:
            loop = asyncio.new_event_loop()
            AsyncMasterLink(worker_end, refuse_client, loop).start()
            loop.run_forever()
    finally:
        os._exit(code)


@pytest.mark.parametrize("link_kind", ["green", "asyncio"])
def test_a_worker_whose_channel_reader_fails_exits_non_zero_to_be_replaced(link_kind):
    """It used to keep heartbeating with a dead reader: every client sent to it was lost."""
    master_end, worker_end = frames.socket_pair()
    client = handoff(master_end, ("10.1.2.9", 9))
    read_log, write_log = os.pipe()
    pid = os.fork()
    if pid == 0:
        _read_in_a_child(link_kind, worker_end, write_log)
    os.close(write_log)

    def exited() -> tuple[int] | None:
        done, status = os.waitpid(pid, os.WNOHANG)
        return (status,) if done else None

    try:
        (status,) = wait_for(exited, 30, what="the worker to exit")
    except AssertionError:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise
    with os.fdopen(read_log) as said:
        log = said.read()
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 1, (status, log)
    assert f"worker {pid}: its channel reader failed; it exits to be replaced" in log
    assert "RuntimeError: the runtime could not take the client" in log
    for each in (client, master_end, worker_end):
        each.close()
