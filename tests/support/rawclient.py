"""Engine.IO spoken by hand over a plain socket: what a hostile or broken client sends, and
what a keep-alive HTTP/1.1 client sends (requests of several sessions on one connection)."""
from __future__ import annotations

import base64
import concurrent.futures
import dataclasses
import json
import os
import socket
import struct
import time
from http.client import HTTPConnection
from typing import Callable

from tests.support.clients import source_address
from cluster.protocol.sids import tag_of

MASK = b"\x1f\x2e\x3d\x4c"


def http(port: int, request: bytes, source: str = "127.0.0.1", timeout: float = 10) -> bytes:
    """Send ``request`` on a new connection and read until the server closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                  source_address=(source, 0)) as sock:
        sock.sendall(request)
        return read_to_eof(sock)


def read_to_eof(sock: socket.socket, limit: int = 1 << 20) -> bytes:
    """Everything the peer sends until it closes (or ``limit`` bytes)."""
    data = b""
    while len(data) < limit:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def handshake(port: int, source: str = "127.0.0.1", timeout: float = 10) -> str:
    """Open an Engine.IO polling session; return its sid."""
    answer = http(port, b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\n"
                        b"Host: x\r\nConnection: close\r\n\r\n", source, timeout)
    head, _, body = answer.partition(b"\r\n\r\n")
    if b"\r\ntransfer-encoding: chunked" in head.lower():  # uvicorn answers so
        body = dechunk(body)
    return json.loads(body[body.index(b"{"):])["sid"]


def frame(opcode: int, payload: bytes, fin: bool = True, compressed: bool = False) -> bytes:
    """One client websocket frame (masked, as RFC 6455 wants); ``compressed``: RSV1 set
    (a permessage-deflate message's first frame)."""
    size = len(payload)
    first = (0x80 if fin else 0) | (0x40 if compressed else 0) | opcode
    if size < 126:
        header = struct.pack("!BB", first, 0x80 | size)
    elif size < 65536:
        header = struct.pack("!BBH", first, 0x80 | 126, size)
    else:
        header = struct.pack("!BBQ", first, 0x80 | 127, size)
    stream = (MASK * (size // 4 + 1))[:size]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(size, "big")
    return header + MASK + masked


def upgrade(port: int, source: str = "127.0.0.1", sid: str | None = None,
            extensions: str | None = None, timeout: float = 10,
            host: str = "127.0.0.1") -> tuple[socket.socket, bytes]:
    """A websocket upgrade of session ``sid`` (None: a websocket-only session), offering
    ``extensions``, to ``host``: the raw socket after the 101, and the 101's head."""
    sock = socket.create_connection((host, port), timeout=timeout,
                                    source_address=(source, 0))
    key = base64.b64encode(os.urandom(16)).decode()
    query = "EIO=4&transport=websocket" + (f"&sid={sid}" if sid else "")
    offer = f"Sec-WebSocket-Extensions: {extensions}\r\n" if extensions else ""
    sock.sendall(f"GET /socket.io/?{query} HTTP/1.1\r\nHost: x\r\n"
                 f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                 f"Sec-WebSocket-Version: 13\r\n{offer}\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        byte = sock.recv(1)
        if not byte:
            raise AssertionError(f"no upgrade: {head!r}")
        head += byte
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock, head


def websocket(port: int, source: str = "127.0.0.1", timeout: float = 10) -> socket.socket:
    """A session upgraded to websocket (probe done): the raw socket, after the 101."""
    sock, _ = upgrade(port, source, handshake(port, source), timeout=timeout)
    sock.sendall(frame(1, b"2probe"))
    assert read_frame(sock) == (1, b"3probe")
    sock.sendall(frame(1, b"5"))
    return sock


def read_frame(sock: socket.socket) -> tuple[int, bytes]:
    """One server frame: (opcode, payload)."""
    opcode, _, payload = read_frame_bits(sock)
    return opcode, payload


def read_frame_bits(sock: socket.socket) -> tuple[int, bool, bytes]:
    """One server frame: (opcode, whether RSV1 is set (permessage-deflate: compressed), payload)."""
    first, second = _exactly(sock, 2)
    size = second & 127
    if size == 126:
        size = struct.unpack("!H", _exactly(sock, 2))[0]
    elif size == 127:
        size = struct.unpack("!Q", _exactly(sock, 8))[0]
    return first & 15, bool(first & 0x40), _exactly(sock, size)


def _exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError(f"closed after {data!r}")
        data += chunk
    return data


# ------------------------------------------- Engine.IO long-polling, a connection per request

def tcp_from(port: int, source: str, host: str = "127.0.0.1") -> Callable[[], socket.socket]:
    """Opens connections to the cluster (at ``host``) from ``source``."""
    def connect() -> socket.socket:
        sock = socket.socket()
        sock.bind((source, 0))
        sock.connect((host, port))
        return sock
    return connect


def unix_at(path: str) -> Callable[[], socket.socket]:
    def connect() -> socket.socket:
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(path)
        return sock
    return connect


def exchange(sock: socket.socket, writes: list[bytes], gap: float = 0.05,
             timeout: float = 10) -> tuple[int, str]:
    """Write ``writes`` with ``gap`` seconds between them; read the HTTP/1.0 answer to EOF."""
    with sock:
        sock.settimeout(timeout)
        for index, data in enumerate(writes):
            if index:
                time.sleep(gap)
            sock.sendall(data)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0
    if b"\r\ntransfer-encoding: chunked" in head.lower():  # uvicorn's httptools answers 1.0 so
        body = dechunk(body)
    return status, body.decode(errors="replace")


def dechunk(body: bytes) -> bytes:
    """The payload of a chunked HTTP body."""
    out = b""
    while body:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out, body = out + body[:size], body[size + 2:]
    return out


@dataclasses.dataclass
class RawClient:
    """A Socket.IO client over HTTP/1.0 long-polling, each request on a new connection.

    ``writes`` turns one request into the writes that send it (a PROXY header first,
    a request split in two …).
    """

    connect: Callable[[], socket.socket]
    writes: Callable[[bytes], list[bytes]] = lambda request: [request]
    headers: str = ""
    sid: str | None = None
    acks: int = 0

    def request(self, method: str, body: str = "", sid: str | None = None) -> tuple[int, str]:
        sid = sid or self.sid
        query = "EIO=4&transport=polling" + (f"&sid={sid}" if sid else "")
        data = (f"{method} /socket.io/?{query} HTTP/1.0\r\nHost: test\r\n{self.headers}"
                f"Content-Type: text/plain;charset=UTF-8\r\nContent-Length: {len(body)}\r\n\r\n"
                f"{body}").encode()
        return exchange(self.connect(), self.writes(data))

    def handshake(self) -> str:
        """A new Engine.IO session: its sid."""
        status, body = self.request("GET", sid="")
        assert status == 200 and body.startswith("0{"), (status, body)
        return json.loads(body[1:])["sid"]

    def open(self) -> RawClient:
        self.sid = self.handshake()
        assert self.request("POST", "40") == (200, "OK")
        assert self.request("GET")[1].startswith("40{")
        return self

    def call(self, event: str) -> dict:
        ack, self.acks = self.acks, self.acks + 1
        assert self.request("POST", f"42{ack}{json.dumps([event])}") == (200, "OK")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            status, body = self.request("GET")
            assert status == 200, (status, body)
            for packet in body.split("\x1e"):
                if packet.startswith(f"43{ack}["):
                    return json.loads(packet[len(f"43{ack}"):])[0]
        raise AssertionError(f"no answer to {event}")


def in_threads(function, items, threads: int = 8) -> list:
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        return list(pool.map(function, items))


class KeepAlive:
    """One HTTP/1.1 keep-alive connection from ``source`` to ``host``; fails if it is ever
    reopened."""

    def __init__(self, port: int, source: str, host: str = "127.0.0.1") -> None:
        self.http = HTTPConnection(host, port, timeout=15, source_address=(source, 0))
        self.http.connect()
        self.local = self.http.sock.getsockname()

    def request(self, method: str, sid: str | None, body: str = "") -> tuple[int, str]:
        query = "EIO=4&transport=polling" + (f"&sid={sid}" if sid else "")
        self.http.request(method, f"/socket.io/?{query}", body=body.encode(),
                          headers={"Content-Type": "text/plain;charset=UTF-8"})
        response = self.http.getresponse()
        text = response.read().decode()
        assert self.http.sock is not None and self.http.sock.getsockname() == self.local, \
            "the connection was closed and reopened"
        return response.status, text

    def close(self) -> None:
        self.http.close()


def two_sessions_on_two_workers(port: int) -> tuple[str, str]:
    """Handshakes (each on its own connection) until two sessions live on different workers."""
    sids: dict[int, str] = {}
    for index in range(40):
        probe = KeepAlive(port, source_address(200 + index))
        status, body = probe.request("GET", None)
        probe.close()
        assert status == 200, (status, body)
        sid = json.loads(body[1:])["sid"]
        sids.setdefault(tag_of(sid), sid)
        if len(sids) == 2:
            return tuple(sids.values())  # type: ignore[return-value]
    raise AssertionError("every handshake landed on one worker")
