"""Framing of the master <-> worker messages over each worker's AF_UNIX SOCK_SEQPACKET pair.

Both sides import this module (the master in ``cluster/``, the workers in ``workers/``);
it imports the standard library only. A packet is a two-byte header (:func:`header`: a
one-byte :class:`Kind`, a one-byte flag saying whether more fragments follow) and a
payload (:func:`payload_of`). Payloads larger than :data:`MAX_FRAGMENT` are split into
fragments that the receiver joins again with a :class:`Reassembler` (SEQPACKET keeps
every fragment's boundary and their order). A hand-off carries the client's socket as
an ``SCM_RIGHTS`` fd.

A worker runs the user's code, so the master trusts nothing it reads here: every
packet and every message from a worker goes through :meth:`Reassembler.feed` and
:func:`parse_from_worker`, pure functions that raise :class:`ProtocolError` (one line,
no payload bytes in it) for anything that is not a well-formed worker message. The
master kills a worker that sends one; nothing a worker sends can raise elsewhere.
"""
from __future__ import annotations

import array
import enum
import dataclasses
import json
import os
import socket

from .sids import TAG_LIMIT

MAX_FRAGMENT = 60 * 1024
"""Largest payload carried by one packet; larger payloads are fragmented."""

HEADER_SIZE = 2
"""Bytes of a packet's header: the kind, then the more-fragments flag (:func:`header`)."""

RECV_SIZE = MAX_FRAGMENT + HEADER_SIZE
"""Buffer size that holds any single packet."""

SOCKET_BUFFER = 4 * 1024 * 1024
"""Send/receive buffer asked for on both ends (the kernel may cap it)."""

MAX_MESSAGE = 16 * 1024 * 1024
"""Largest reassembled message (a relayed pub/sub message); a larger one is a protocol error."""

MAX_BOOT_ERROR = 1000
"""Characters of a worker's boot-failure text that the master keeps."""

_MORE = 1


class ProtocolError(ValueError):
    """A packet or message breaks the master <-> worker protocol; the text says how, in one line."""


class Kind(enum.IntEnum):
    """What a message between the master and a worker means; the direction is in the comment."""

    HANDOFF = 1  #: master -> worker: a client socket (fd) and its address
    READY = 2  #: worker -> master: booted and serving
    HEARTBEAT = 3  #: worker -> master: alive; payload = a :class:`Heartbeat`
    PUBLISH = 4  #: worker -> master: relay this pub/sub message
    DELIVER = 5  #: master -> worker: a pub/sub message from another worker
    DRAIN = 6  #: master -> worker: stop taking connections, finish the open ones
    PUBLISH_TO = 7  #: worker -> master: relay this message to one worker (:func:`addressed`)
    BOOT_FAILED = 8  #: worker -> master: could not boot; payload = the error, one line
    HANDBACK = 9  #: worker -> master: a client (fd) another worker's request came on; :func:`resumed`
    RESUME = 10  #: master -> worker: a client (fd) and the bytes to serve first; :func:`resumed`
    HOSTS = 11  #: forwarder -> master: the directory of hosts and the forwards' counts (JSON)


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


def header(kind: Kind, more: bool = False) -> bytes:
    """The header of a packet of ``kind``; ``more`` when fragments of the message follow it."""
    return bytes((kind, _MORE if more else 0))


def payload_of(packet: bytes) -> bytes:
    """The payload of a ``packet``: what follows its :func:`header`."""
    return packet[HEADER_SIZE:]


def packets(kind: Kind, payload: bytes | memoryview = b"") -> list[bytes]:
    """Encode one message as the list of packets to send, in order.

    Raises :class:`ProtocolError` for a payload over :data:`MAX_MESSAGE`: the other end
    would refuse it.
    """
    if len(payload) > MAX_MESSAGE:
        raise ProtocolError(f"{kind.name} message of {len(payload)} bytes is over "
                            f"{MAX_MESSAGE} bytes")
    if len(payload) <= MAX_FRAGMENT:
        return [header(kind) + payload]
    view = memoryview(payload)
    last = len(payload) - 1
    more, done = header(kind, more=True), header(kind)
    return [(more if start + MAX_FRAGMENT <= last else done) + view[start:start + MAX_FRAGMENT]
            for start in range(0, len(payload), MAX_FRAGMENT)]


class Reassembler:
    """Joins received packets back into whole ``(kind, payload)`` messages.

    :param limit: the largest payload a message may reassemble to.
    """

    def __init__(self, limit: int = MAX_MESSAGE) -> None:
        self._limit = limit
        self._kind: Kind | None = None
        self._parts: list[bytes] = []
        self._size = 0

    def feed(self, packet: bytes) -> tuple[Kind, bytes] | None:
        """Take one packet; return the message it completes, or None.

        Raises :class:`ProtocolError` for a packet that is too short, has an unknown
        kind or flag, continues an unfinished message of another kind, or grows a
        message past the limit. The reassembler is empty again after an error.
        """
        try:
            return self._feed(packet)
        except ProtocolError:
            self._kind, self._parts, self._size = None, [], 0
            raise

    def _feed(self, packet: bytes) -> tuple[Kind, bytes] | None:
        if len(packet) < HEADER_SIZE:
            raise ProtocolError(f"short channel packet ({len(packet)} bytes)")
        try:
            kind = Kind(packet[0])
        except ValueError:
            raise ProtocolError(f"unknown message kind {packet[0]}") from None
        if packet[1] & ~_MORE:
            raise ProtocolError(f"bad fragment flags {packet[1]:#04x} on {kind.name}")
        if self._kind is not None and kind is not self._kind:
            raise ProtocolError(f"{kind.name} fragment inside an unfinished {self._kind.name}")
        self._size += len(packet) - HEADER_SIZE
        if self._size > self._limit:
            raise ProtocolError(f"{kind.name} message over {self._limit} bytes")
        if packet[1] & _MORE:
            self._kind = kind
            self._parts.append(payload_of(packet))
            return None
        if self._parts:
            self._parts.append(payload_of(packet))
            payload = b"".join(self._parts)
        else:
            payload = payload_of(packet)
        self._kind, self._parts, self._size = None, [], 0
        return kind, payload


@dataclasses.dataclass(frozen=True)
class Heartbeat:
    """What a worker reports in each HEARTBEAT.

    On the wire: the fields below, in this order, as space-separated ASCII decimal
    integers (``b"12 30"``). To report more, add a field at the end (with a default for
    the older payloads); :meth:`parse` checks every field the same way.
    """

    sessions: int
    """Engine.IO sessions the worker holds."""
    connections: int = 0
    """Connections the worker serves (placement skips a worker at ``--worker-connections``)."""
    full: int = 0
    """1 when the worker can take no new client by its own count (the threading worker:
    every thread of its pool busy); placement skips it as at ``--worker-connections``."""

    MAX_FIELD = 2 ** 31 - 1
    """The largest value a field may carry."""

    def encode(self) -> bytes:
        """The HEARTBEAT payload."""
        return " ".join(str(getattr(self, f.name)) for f in dataclasses.fields(self)).encode()

    @classmethod
    def parse(cls, payload: bytes) -> "Heartbeat":
        """Read a HEARTBEAT payload; :class:`ProtocolError` unless it is well-formed."""
        fields = dataclasses.fields(cls)
        required = sum(1 for f in fields if f.default is dataclasses.MISSING)
        words = payload.split(b" ")
        if not required <= len(words) <= len(fields):
            raise ProtocolError(f"heartbeat with {len(words)} fields, expected "
                                f"{required}..{len(fields)}")
        values = []
        for word in words:
            if not (word.isdigit() and word.isascii() and len(word) <= 10
                    and int(word) <= cls.MAX_FIELD):
                raise ProtocolError(f"heartbeat field {word[:20]!r} is not a count")
            values.append(int(word))
        return cls(*values)


def _parse_ready(payload: bytes) -> None:
    if payload:
        raise ProtocolError(f"READY with a {len(payload)}-byte payload")


def _parse_publish(payload: bytes) -> bytes:
    return payload


def _parse_publish_to(payload: bytes) -> tuple[int, memoryview]:
    if len(payload) < TAG_BYTES:
        raise ProtocolError(f"PUBLISH_TO of {len(payload)} bytes has no worker tag")
    return split_addressed(payload)


def _parse_handback(payload: bytes) -> tuple[tuple[str, int], bytes]:
    if len(payload) > RESUME_LIMIT + 128:
        raise ProtocolError(f"HANDBACK of {len(payload)} bytes")
    try:
        return split_resumed(payload)
    except (ValueError, UnicodeDecodeError):
        raise ProtocolError("HANDBACK without a valid client address") from None


MAX_HOSTS = 64 * 1024
"""Largest HOSTS payload (a JSON object) the master takes from the forwarder."""


def _parse_hosts(payload: bytes) -> dict:
    if len(payload) > MAX_HOSTS:
        raise ProtocolError(f"HOSTS of {len(payload)} bytes is over {MAX_HOSTS} bytes")
    try:
        facts = json.loads(payload)
    except (ValueError, RecursionError):  # not UTF-8 or not JSON; nested too deep
        raise ProtocolError("HOSTS that is not JSON") from None
    if not isinstance(facts, dict):
        raise ProtocolError(f"HOSTS that is a JSON {type(facts).__name__}, not an object")
    return facts


def _parse_boot_failed(payload: bytes) -> str:
    return payload[:4 * MAX_BOOT_ERROR].decode("utf-8", errors="replace")[:MAX_BOOT_ERROR]


WORKER_MESSAGES = {
    Kind.READY: _parse_ready,
    Kind.HEARTBEAT: Heartbeat.parse,
    Kind.PUBLISH: _parse_publish,
    Kind.PUBLISH_TO: _parse_publish_to,
    Kind.BOOT_FAILED: _parse_boot_failed,
    Kind.HANDBACK: _parse_handback,
    Kind.HOSTS: _parse_hosts,
}
"""Kind -> parser of every message a worker may send the master. A new worker message
needs its parser here: the master kills a worker that sends a kind not listed."""


def parse_from_worker(kind: Kind, payload: bytes) -> object:
    """Check a whole message a worker sent; return its value for the master.

    READY: None; HEARTBEAT: a :class:`Heartbeat`; PUBLISH: the payload; PUBLISH_TO:
    (tag, payload); BOOT_FAILED: the error text; HANDBACK: (client address, bytes read);
    HOSTS: the JSON object (a dict; only the forwarder sends it). Raises :class:`ProtocolError` for a
    kind a worker does not send or a payload that does not fit its kind.
    """
    parser = WORKER_MESSAGES.get(kind)
    if parser is None:
        raise ProtocolError(f"{kind.name} is not a message a worker sends")
    return parser(payload)


TAG_BYTES = ((TAG_LIMIT - 1).bit_length() + 7) // 8
"""Length of the worker tag that leads a PUBLISH_TO payload: any tag below
:data:`~cluster.protocol.sids.TAG_LIMIT` fits."""


def addressed(tag: int, payload: bytes) -> bytes:
    """The PUBLISH_TO payload that relays ``payload`` to the worker tagged ``tag`` only."""
    return tag.to_bytes(TAG_BYTES, "big") + payload


def split_addressed(payload: bytes) -> tuple[int, memoryview]:
    """The (worker tag, relayed payload) of a PUBLISH_TO payload (the payload is not copied)."""
    return int.from_bytes(payload[:TAG_BYTES], "big"), memoryview(payload)[TAG_BYTES:]


def encode_address(address: tuple[str, int]) -> bytes:
    """Encode a client's (ip, port) for a hand-off payload."""
    return f"{address[0]} {address[1]}".encode()


_HANDOFF = header(Kind.HANDOFF)
_RESUME = header(Kind.RESUME)


def handoff_packet(address: tuple[str, int]) -> bytes:
    """The packet that hands off a client connected from ``address`` (the fd rides along)."""
    return _HANDOFF + encode_address(address)


def resume_packet(address: tuple[str, int], data: bytes) -> bytes:
    """The packet that hands over a client whose first bytes ``data`` were read (fd rides along)."""
    return _RESUME + resumed(address, data)


def decode_address(payload: bytes) -> tuple[str, int]:
    """Decode what :func:`encode_address` made."""
    host, _, port = payload.decode().rpartition(" ")
    return host, int(port)


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


FD_SPACE = socket.CMSG_SPACE(array.array("i").itemsize)
"""Ancillary bytes for the one file descriptor a packet may carry."""


class PacketReader:
    """Receives the packets of one channel, each into the same buffer of its own: a
    worker's end, or the forwarder's.

    A read allocates only the packet it returns. (:func:`receive_packet` asks malloc for
    the whole 60 KB first, at every read, and shrinks it to what came: in a worker, one
    such read per client handed over spread each client's long-lived memory over more
    pages of the heap, 0.5 KB per idle client at 5,000: docs/benchmarks.md.)
    """

    __slots__ = ("_sock", "_view")

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._view = memoryview(bytearray(RECV_SIZE))

    def receive(self) -> tuple[bytes, int | None]:
        """One packet and the fd it carries, if any. ``b""`` means the peer is gone."""
        size, ancillary, _flags, _address = self._sock.recvmsg_into(
            [self._view], FD_SPACE, socket.MSG_CMSG_CLOEXEC)
        return bytes(self._view[:size]), _passed_fd(ancillary)


def receive_packet(sock: socket.socket) -> tuple[bytes, int | None]:
    """Receive one packet and the fd it carries, if any. ``b""`` means the peer is gone.

    0.3 µs faster a packet than :class:`PacketReader`, for a process whose memory does
    not grow with its clients (the master)."""
    data, ancillary, _flags, _address = sock.recvmsg(RECV_SIZE, FD_SPACE,
                                                     socket.MSG_CMSG_CLOEXEC)
    return data, _passed_fd(ancillary)


def _passed_fd(ancillary: list[tuple[int, int, bytes]]) -> int | None:
    """The file descriptor passed with a packet (any more are closed), or None."""
    fd = None
    for level, kind, cdata in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds = array.array("i")
            fds.frombytes(cdata[:len(cdata) - len(cdata) % fds.itemsize])
            for extra in fds[1:]:
                os.close(extra)
            if fds:
                fd = fds[0]
    return fd
