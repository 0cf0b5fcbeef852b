"""Stand-ins for the forwarder's neighbours in tests: a peer host and the master.

:class:`PeerHost` is a small real HTTP server (asyncio and h11, in a thread of the test
process) on its own loopback address, playing another host's master: it reads the PROXY
v2 header the forwarder writes first (with the master's own parser) and records what each
request carried. It answers a GET with ``peer saw TARGET``, a POST with the body's length,
a websocket upgrade with ``101`` and then echoes every byte; a target containing
``silent`` gets no answer at all.

:class:`ForwarderProcess` starts ``cluster.hosts.forwarder.serve`` in a child process on a
real SEQPACKET channel whose other end the test holds, as the master would.
"""
from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import h11

from cluster.hosts.forwarder_config import ForwarderConfig
from cluster.intake.peek import INCOMPLETE, parse_proxy
from cluster.protocol import frames
from cluster.protocol.frames import Kind
from tests.support.paths import ROOT

FLOOD = 256 * 1024 * 1024
"""Bytes a ``flood`` websocket sends: far more than the socket buffers on the way hold."""


@dataclasses.dataclass
class Seen:
    """What the peer saw on one connection."""

    source: tuple[str, int]
    """The connection's own source address (the forwarder's)."""
    client: tuple[str, int] | None = None
    """The client address of its PROXY header."""
    requests: list[tuple[bytes, bytes, dict[bytes, bytes], bytes]] = dataclasses.field(
        default_factory=list)
    """(method, target, headers, body) of each request."""


class PeerHost:
    """A peer host's stand-in, listening on ``host``:``port``."""

    def __init__(self, host: str, port: int) -> None:
        self.address = (host, port)
        self.connections: list[Seen] = []
        self.flooded = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.base_events.Server | None = None

    def __enter__(self) -> "PeerHost":
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, *self.address), self._loop).result(10)
        return self

    def __exit__(self, *_exc: object) -> None:
        async def stop() -> None:
            assert self._server is not None
            self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen = Seen(writer.get_extra_info("peername")[:2])
        self.connections.append(seen)
        try:
            head = b""
            while (proxy := parse_proxy(head)) is INCOMPLETE:
                head += await reader.read(1)
            seen.client = proxy.client
            conn = h11.Connection(h11.SERVER)
            while True:
                request, body = await self._request(conn, reader)
                if request is None:
                    return
                headers = {name: value for name, value in request.headers}
                seen.requests.append((request.method, request.target, headers, body))
                if b"silent" in request.target:
                    await reader.read()  # never answers; the forwarder gives up first
                    return
                if headers.get(b"upgrade") == b"websocket":
                    writer.write(conn.send(h11.InformationalResponse(
                        status_code=101, headers=[(b"upgrade", b"websocket"),
                                                  (b"connection", b"Upgrade")])))
                    await writer.drain()
                    if b"flood" in request.target:
                        chunk = b"f" * 65536
                        while self.flooded < FLOOD:
                            writer.write(chunk)
                            await writer.drain()
                            self.flooded += len(chunk)
                        return
                    while data := await reader.read(65536):
                        writer.write(data)
                        await writer.drain()
                    return
                answer = (f"peer saw {request.target.decode()}" if request.method == b"GET"
                          else f"{len(body)} bytes").encode()
                writer.write(conn.send(h11.Response(
                    status_code=200, headers=[(b"content-type", b"text/plain"),
                                              (b"content-length", str(len(answer)).encode())]))
                             + conn.send(h11.Data(data=answer)) + conn.send(h11.EndOfMessage()))
                await writer.drain()
                conn.start_next_cycle()
        except (ConnectionError, h11.ProtocolError):
            return
        finally:
            writer.close()

    @staticmethod
    async def _request(conn: h11.Connection, reader: asyncio.StreamReader):
        request, body = None, b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await reader.read(65536))
            elif isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                return request, body
            else:
                return None, b""


class ForwarderProcess:
    """The forwarder, started on a channel whose master end the test holds, and a
    listener for the test's clients to connect to (as to the master's).

    :param config: the forwarder's settings.
    :param log_path: where its log lines go.
    """

    def __init__(self, config: ForwarderConfig, log_path: Path) -> None:
        self.channel, forwarder_end = frames.socket_pair()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.log_path = log_path
        settings = json.dumps({**dataclasses.asdict(config),
                               "peers": {str(k): list(v) for k, v in config.peers.items()}})
        code = ("import json, logging, socket, sys\n"
                "from cluster.hosts.forwarder import serve\n"
                "from cluster.hosts.forwarder_config import ForwarderConfig\n"
                "logging.basicConfig(level=logging.INFO, stream=sys.stderr)\n"
                "s = json.loads(sys.argv[2])\n"
                "s['peers'] = {int(k): tuple(v) for k, v in s['peers'].items()}\n"
                "s['advertise'] = tuple(s['advertise'])\n"
                "serve(socket.socket(fileno=int(sys.argv[1])), ForwarderConfig(**s))\n")
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", code, str(forwarder_end.fileno()), settings],
                pass_fds=[forwarder_end.fileno()], cwd=ROOT, stderr=log)
        forwarder_end.close()
        self.channel.settimeout(10)
        self._reassembler = frames.Reassembler()
        self.hosts: dict | None = None

    def receive(self, timeout: float = 10) -> tuple[Kind, bytes, int | None]:
        """The next whole message from the forwarder (kind, payload, fd); HOSTS are kept
        in :attr:`hosts` as they pass."""
        deadline = time.monotonic() + timeout
        while True:
            self.channel.settimeout(max(deadline - time.monotonic(), 0.01))
            packet, fd = frames.receive_packet(self.channel)
            if not packet:
                raise EOFError("the forwarder closed its channel")
            message = self._reassembler.feed(packet)
            if message is not None:
                kind, payload = message
                value = frames.parse_from_worker(kind, payload)
                if kind is Kind.HOSTS:
                    self.hosts = value  # type: ignore[assignment]
                return kind, payload, fd

    def wait_for(self, wanted: Kind, timeout: float = 10) -> tuple[bytes, int | None]:
        """Read messages until one of kind ``wanted``; its (payload, fd)."""
        deadline = time.monotonic() + timeout
        while True:
            kind, payload, fd = self.receive(max(deadline - time.monotonic(), 0.01))
            if kind is wanted:
                return payload, fd
            if fd is not None:
                os.close(fd)

    def hand_off(self, client: socket.socket, address: tuple[str, int],
                 read: bytes | None = None) -> None:
        """Hand ``client`` to the forwarder (HANDOFF; RESUME with the bytes ``read``)."""
        packet = (frames.handoff_packet(address) if read is None
                  else frames.resume_packet(address, read))
        frames.send_packet(self.channel, packet, client.fileno())
        client.close()

    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self.channel.close()
        self.listener.close()
