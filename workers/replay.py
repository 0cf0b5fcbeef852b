"""A request reader for the green runtimes that first replays a resumed connection's bytes.

A connection handed back by another worker (:mod:`workers.handback`) arrives with the
bytes that worker had read. eventlet.wsgi and gevent.pywsgi read requests through a
buffered file over the socket; over a :class:`ReplayReader` they read those bytes
first, then the socket, and parse them exactly as if they had read them themselves.
It can also read without waiting (:attr:`ReplayReader.waits`), to take what the socket
holds at the moment of a hand-back.
"""
from __future__ import annotations

import io
import socket

READ_BUFFER = io.DEFAULT_BUFFER_SIZE
"""Bytes the request reader buffers (what a hand-back carries past the request line, at most)."""


class ReplayReader(io.RawIOBase):
    """A raw reader over a green socket that first returns ``preface``.

    :param sock: the client's green socket (``_sock``: simple-websocket finds it there).
    :param raw: the real, non-blocking socket under ``sock``, for reads that do not wait.
    :param preface: bytes already read from it elsewhere, to be read again here first.
    """

    def __init__(self, sock: socket.socket, raw: socket.socket, preface: bytes = b"") -> None:
        super().__init__()
        self._sock = sock
        self._raw = raw
        self._preface = preface
        self.waits = True
        """False: a read returns at once, with None when the socket has nothing."""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int | None:  # type: ignore[override]
        if self._preface:
            size = min(len(buffer), len(self._preface))
            buffer[:size] = self._preface[:size]
            self._preface = self._preface[size:]
            return size
        if self.waits:
            return self._sock.recv_into(buffer)
        try:
            return self._raw.recv_into(buffer, len(buffer), socket.MSG_DONTWAIT)
        except OSError:  # nothing there (or an error the next waiting read reports)
            return None

    def take_preface(self) -> bytes:
        """The preface bytes not read yet, taken out."""
        rest, self._preface = self._preface, b""
        return rest


def buffered(rfile: io.BufferedReader, reader: ReplayReader) -> bytes:
    """What ``rfile`` holds past what was read from it, plus what the socket has now,
    plus the preface not read yet: everything a hand-back carries after the request line."""
    reader.waits = False
    try:
        held = rfile.peek(0)
    finally:
        reader.waits = True
    return held + reader.take_preface()
