"""The master <-> worker channel: message framing over an AF_UNIX SOCK_SEQPACKET pair.

Both sides import this module; it imports neither side. A message is a one-byte
kind, a one-byte flag saying whether more fragments follow, and a payload. Payloads
larger than :data:`MAX_FRAGMENT` are split into fragments that the receiver joins
again with a :class:`Reassembler` (SEQPACKET keeps every fragment's boundary and
their order). A hand-off carries the client's socket as an ``SCM_RIGHTS`` fd.
"""
from __future__ import annotations

import array
import enum
import os
import socket

MAX_FRAGMENT = 60 * 1024
"""Largest payload carried by one packet; larger payloads are fragmented."""

RECV_SIZE = MAX_FRAGMENT + 2
"""Buffer size that holds any single packet."""

SOCKET_BUFFER = 4 * 1024 * 1024
"""Send/receive buffer asked for on both ends (the kernel may cap it)."""

_MORE = 1


class Kind(enum.IntEnum):
    """What a channel message means; the direction is in the comment."""

    HANDOFF = 1  #: master -> worker: a client socket (fd) and its address
    READY = 2  #: worker -> master: booted and serving
    HEARTBEAT = 3  #: worker -> master: alive; payload = :func:`heartbeat_payload`
    PUBLISH = 4  #: worker -> master: relay this pub/sub message
    DELIVER = 5  #: master -> worker: a pub/sub message from another worker
    DRAIN = 6  #: master -> worker: stop taking connections, finish the open ones
    PUBLISH_TO = 7  #: worker -> master: relay this message to one worker (:func:`addressed`)
    BOOT_FAILED = 8  #: worker -> master: could not boot; payload = the error, one line
    HANDBACK = 9  #: worker -> master: a client (fd) another worker's request came on; :func:`resumed`
    RESUME = 10  #: master -> worker: a client (fd) and the bytes to serve first; :func:`resumed`


def socket_pair() -> tuple[socket.socket, socket.socket]:
    """Make the (master end, worker end) pair for one worker."""
    master_end, worker_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    for end in (master_end, worker_end):
        for option in (socket.SO_SNDBUF, socket.SO_RCVBUF):
            try:
                end.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)
            except OSError:  # pragma: no cover - the kernel caps silently on Linux
                pass
    return master_end, worker_end


def frames(kind: Kind, payload: bytes | memoryview = b"") -> list[bytes]:
    """Encode one message as the list of packets to send, in order."""
    head = bytes((kind,))
    if len(payload) <= MAX_FRAGMENT:
        return [head + b"\0" + payload]
    view = memoryview(payload)
    last = len(payload) - 1
    out = []
    for start in range(0, len(payload), MAX_FRAGMENT):
        more = b"\1" if start + MAX_FRAGMENT <= last else b"\0"
        out.append(head + more + view[start:start + MAX_FRAGMENT])
    return out


class Reassembler:
    """Joins received packets back into whole ``(kind, payload)`` messages."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def feed(self, packet: bytes) -> tuple[Kind, bytes] | None:
        """Take one packet; return the message it completes, or None.

        Raises ValueError for a packet that is not a channel packet.
        """
        if len(packet) < 2:
            raise ValueError("short channel packet")
        kind = Kind(packet[0])
        if packet[1] & _MORE:
            self._parts.append(packet[2:])
            return None
        if self._parts:
            self._parts.append(packet[2:])
            payload = b"".join(self._parts)
            self._parts = []
            return kind, payload
        return kind, packet[2:]


TAG_BYTES = 4
"""Length of the worker tag that leads a PUBLISH_TO payload."""


def addressed(tag: int, payload: bytes) -> bytes:
    """The PUBLISH_TO payload that relays ``payload`` to the worker tagged ``tag`` only."""
    return tag.to_bytes(TAG_BYTES, "big") + payload


def split_addressed(payload: bytes) -> tuple[int, memoryview]:
    """The (worker tag, relayed payload) of a PUBLISH_TO payload (the payload is not copied)."""
    return int.from_bytes(payload[:TAG_BYTES], "big"), memoryview(payload)[TAG_BYTES:]


def encode_address(address: tuple[str, int]) -> bytes:
    """Encode a client's (ip, port) for a hand-off payload."""
    return f"{address[0]} {address[1]}".encode()


def handoff_packet(address: tuple[str, int]) -> bytes:
    """The packet that hands off a client connected from ``address`` (the fd rides along)."""
    return b"\x01\x00" + encode_address(address)


def resume_packet(address: tuple[str, int], data: bytes) -> bytes:
    """The packet that hands over a client whose first bytes ``data`` were read (fd rides along)."""
    return bytes((Kind.RESUME, 0)) + resumed(address, data)


def decode_address(payload: bytes) -> tuple[str, int]:
    """Decode what :func:`encode_address` made."""
    host, _, port = payload.decode().rpartition(" ")
    return host, int(port)


def heartbeat_payload(sessions: int, connections: int) -> bytes:
    """A HEARTBEAT payload: the worker's Engine.IO sessions and open connections.

    Two ASCII decimal integers separated by one space, e.g. ``b"12 30"``.
    """
    return b"%d %d" % (sessions, connections)


def parse_heartbeat(payload: bytes) -> tuple[int, int]:
    """The (sessions, connections) of a HEARTBEAT payload; ValueError when malformed.

    A lone integer (sessions only) is accepted, with 0 connections.
    """
    fields = payload.split(b" ")
    if not 1 <= len(fields) <= 2 or not all(f.isdigit() and len(f) <= 12 for f in fields):
        raise ValueError("bad heartbeat payload")
    return int(fields[0]), int(fields[1]) if len(fields) == 2 else 0


RESUME_LIMIT = MAX_FRAGMENT - 256
"""Most bytes a HANDBACK or RESUME carries: the message is one packet (it carries an fd)."""


def resumed(address: tuple[str, int], data: bytes) -> bytes:
    """The payload of a HANDBACK or RESUME: the client's address, a newline, then ``data``,
    the bytes of the connection already read (a worker serves them before reading more)."""
    return encode_address(address) + b"\n" + data


def split_resumed(payload: bytes) -> tuple[tuple[str, int], bytes]:
    """The (client address, bytes already read) of :func:`resumed`; ValueError when malformed."""
    head, newline, data = payload.partition(b"\n")
    if not newline:
        raise ValueError("no address in a hand-back")
    return decode_address(head), data


def send_packet(sock: socket.socket, packet: bytes, fd: int | None = None) -> None:
    """Send one packet, with ``fd`` attached when given (raises BlockingIOError when full)."""
    if fd is None:
        sock.send(packet)
    else:
        sock.sendmsg([packet], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", (fd,)))])


def receive_packet(sock: socket.socket) -> tuple[bytes, int | None]:
    """Receive one packet and the fd it carries, if any. ``b""`` means the peer is gone."""
    data, ancillary, _flags, _address = sock.recvmsg(
        RECV_SIZE, socket.CMSG_SPACE(array.array("i").itemsize), socket.MSG_CMSG_CLOEXEC)
    fd = None
    for level, kind, cdata in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds = array.array("i")
            fds.frombytes(cdata[:len(cdata) - len(cdata) % fds.itemsize])
            for extra in fds[1:]:
                os.close(extra)
            if fds:
                fd = fds[0]
    return data, fd
