"""Engine.IO spoken by hand over a plain socket: what a hostile or broken client sends."""
from __future__ import annotations

import base64
import json
import os
import socket
import struct

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
    body = answer.split(b"\r\n\r\n", 1)[1]
    return json.loads(body[body.index(b"{"):])["sid"]


def frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    """One client websocket frame (masked, as RFC 6455 wants)."""
    size = len(payload)
    first = (0x80 if fin else 0) | opcode
    if size < 126:
        header = struct.pack("!BB", first, 0x80 | size)
    elif size < 65536:
        header = struct.pack("!BBH", first, 0x80 | 126, size)
    else:
        header = struct.pack("!BBQ", first, 0x80 | 127, size)
    stream = (MASK * (size // 4 + 1))[:size]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(size, "big")
    return header + MASK + masked


def websocket(port: int, source: str = "127.0.0.1", timeout: float = 10) -> socket.socket:
    """A session upgraded to websocket (probe done): the raw socket, after the 101."""
    sid = handshake(port, source)
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                    source_address=(source, 0))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(f"GET /socket.io/?EIO=4&transport=websocket&sid={sid} HTTP/1.1\r\nHost: x\r\n"
                 f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                 "Sec-WebSocket-Version: 13\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        byte = sock.recv(1)
        if not byte:
            raise AssertionError(f"no upgrade: {head!r}")
        head += byte
    assert head.startswith(b"HTTP/1.1 101"), head
    sock.sendall(frame(1, b"2probe"))
    assert read_frame(sock) == (1, b"3probe")
    sock.sendall(frame(1, b"5"))
    return sock


def read_frame(sock: socket.socket) -> tuple[int, bytes]:
    """One server frame: (opcode, payload)."""
    first, second = _exactly(sock, 2)
    size = second & 127
    if size == 126:
        size = struct.unpack("!H", _exactly(sock, 2))[0]
    elif size == 127:
        size = struct.unpack("!Q", _exactly(sock, 8))[0]
    return first & 15, _exactly(sock, size)


def _exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError(f"closed after {data!r}")
        data += chunk
    return data
