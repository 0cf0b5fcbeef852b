"""The chat app, plus events that make the serving worker write garbage on its channel.

``misbehave(mode)`` sends the master raw packets that break the channel protocol, as a
buggy or hostile app could (it finds the channel through the relay manager). The master
must kill that worker, replace it, say why, and keep serving everyone else.
``hand_back_pipe(sid)`` hands the master back a pipe as if it were the connection of a
request for ``sid``: the master must not pass it on to the worker that owns ``sid``.
"""
import os

from cluster.protocol import frames
from cluster.protocol.frames import Kind
from tests.apps.chat import app, sio  # noqa: F401


def _packet(kind: int, more: bool, payload: bytes = b"") -> bytes:
    return bytes((kind, int(more))) + payload


def _packets(mode: str) -> list[bytes]:
    """The raw packets one kind of misbehaviour sends."""
    if mode == "heartbeat":  # not a count: the master used to crash on int(payload)
        return [_packet(Kind.HEARTBEAT, False, b"\x1b[31m12\r\nFORGED")]
    if mode == "mixed":  # an unfinished PUBLISH, then a HEARTBEAT that would join it
        return [_packet(Kind.PUBLISH, True, b"x" * 100), _packet(Kind.HEARTBEAT, False, b"3")]
    if mode == "unknown":
        return [_packet(200, False, b"hello")]
    if mode == "huge":  # fragments that never end, past the message limit
        fragment = _packet(Kind.PUBLISH, True, b"x" * frames.MAX_FRAGMENT)
        return [fragment] * (frames.MAX_MESSAGE // frames.MAX_FRAGMENT + 2)
    if mode == "master-kind":  # a message only the master sends
        return [_packet(Kind.HANDOFF, False, b"127.0.0.1 80")]
    if mode == "short":
        return [b"\x03"]
    raise ValueError(mode)


@sio.event
def misbehave(sid, mode):
    # Sent with the whole worker blocked, as a hostile app would: no heartbeat of the
    # worker's own can come between two fragments (the master would rightly name that
    # violation instead, on a busy machine).
    sock = sio.manager._link._sock
    sock.setblocking(True)
    try:
        for packet in _packets(mode):
            frames.send_packet(sock, packet)
    finally:
        sock.setblocking(False)
    return "sent"


@sio.event
def hand_back_pipe(sid, victim_sid):
    read_end, write_end = os.pipe()
    request = f"GET /socket.io/?EIO=4&transport=polling&sid={victim_sid} HTTP/1.1\r\n\r\n"
    sio.manager._link.send(Kind.HANDBACK, frames.resumed(("127.0.0.1", 1), request.encode()),
                           read_end)
    os.close(read_end)
    os.close(write_end)
    return "sent"
