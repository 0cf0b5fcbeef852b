"""Where each request of an HTTP/1.x connection ends and the next begins.

The asyncio servers (uvicorn's and aiohttp's protocols) read a connection in chunks
that know nothing of requests. To look at each request before the server does (the
hand-back, :mod:`workers.asyncio.protocol`; the limits, :mod:`workers.asyncio.guard`),
the worker follows the requests itself: a request's head ends at its blank line, its
body is ``Content-Length`` bytes long or a chunked body that ends at its last chunk.

:meth:`RequestBounds.feed` stops at the end of each head and of each request, so that
its caller can act on a head (:attr:`RequestBounds.head`) before the server reads on.

A connection this cannot follow is *lost* for good, and its bytes go to the server
untouched from then on: ``CONNECT``, an unreadable ``Content-Length`` or chunk size, a
``Transfer-Encoding`` that does not end with ``chunked``, or a head past
:data:`HEAD_LIMIT` (:attr:`RequestBounds.too_large`). A request that asks for an
upgrade loses the connection too (what follows may be a websocket); a caller that
learns that the server did not upgrade calls :meth:`RequestBounds.resume`.

Pure: bytes in, counts out; no I/O.
"""
from __future__ import annotations

import dataclasses

HEAD_LIMIT = 65536
"""Longest request head followed (longer: the connection is lost,
:attr:`RequestBounds.too_large`)."""

LINE_LIMIT = 4096
"""Longest chunk-size or trailer line followed in a chunked body."""

_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_END, _TRAILER = range(5)
"""Where in a request the next byte is: its head, a body of known length, a chunk's size
line, the line end after a chunk's data, the trailer of a chunked body."""


@dataclasses.dataclass(frozen=True)
class Head:
    """A request head, as far as the followers need it.

    :param method: the request method (``GET``).
    :param target: the request target (path and query).
    :param fields: header values by lower-case name (the last one of a repeated name).
    """

    method: str
    target: str
    fields: dict[str, str]

    @classmethod
    def parse(cls, head: bytes) -> "Head":
        """The head of ``head`` (a whole request head, blank line included)."""
        line, _, rest = head.partition(b"\n")
        method, _, target = line.decode("latin-1").strip().partition(" ")
        fields = {}
        for field in rest.split(b"\n"):
            name, colon, value = field.partition(b":")
            if colon:
                fields[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
        return cls(method, target.rpartition(" ")[0] or target, fields)


class RequestBounds:
    """Follows the requests of one connection, chunk by chunk.

    Feed it the connection's bytes in order; :meth:`feed` tells how many belong to the
    request in progress (up to the end of its head, then of its body), and
    :attr:`at_start` whether the next byte begins a request.
    """

    def __init__(self) -> None:
        self.at_start = True
        """The next byte fed begins a request (its request line)."""
        self.lost = False
        """The connection cannot be followed any more: every byte is the server's."""
        self.too_large = False
        """It was lost to a head longer than :data:`HEAD_LIMIT`."""
        self.upgrading = False
        """It was lost to a request that asked for an upgrade (see :meth:`resume`)."""
        self.head: Head | None = None
        """The head that the last :meth:`feed` completed, else None."""
        self._state = _HEAD
        self._buffer = b""  # the head, or the chunked body's line, so far
        self._left = 0  # body bytes, or chunk data bytes, still to come
        self._upgrade = False  # the request in progress asks for an upgrade

    @property
    def in_body(self) -> bool:
        """The request in progress has sent its head, not all of its body."""
        return not self.lost and self._state != _HEAD

    def feed(self, data: bytes) -> int:
        """Take the next bytes of the connection; return how many belong to the request's
        head or body in progress.

        That is all of ``data``, or the bytes up to the end of the head (then
        :attr:`head` is set) or of the request (then :attr:`at_start` is True); the
        rest of ``data`` is for the next call.
        """
        self.head = None
        if self.lost:
            return len(data)
        self.at_start = False
        if self._state == _HEAD:
            return self._feed_head(data)
        if self._state == _LENGTH:
            taken = min(self._left, len(data))
            self._left -= taken
            if self._left == 0:
                self._end()
            return taken
        return self._feed_chunked(data)

    def resume(self) -> None:
        """The request that asked for an upgrade was answered without one: follow on."""
        if self.upgrading:
            self.lost = self.upgrading = False
            self.at_start = True

    def _feed_head(self, data: bytes) -> int:
        searched = len(self._buffer)
        head = self._buffer + data
        end = _head_end(head, searched)
        if end is None:
            self._buffer = head
            if len(head) > HEAD_LIMIT:
                self.too_large = True
                self._lose()
            return len(data)
        self._buffer = b""
        if end > HEAD_LIMIT:
            self.too_large = True
            self._lose()
            return len(data)
        self.head = Head.parse(head[:end])
        self._begin_body(self.head)
        return end - searched

    def _begin_body(self, head: Head) -> None:
        if head.method == "CONNECT":
            self._lose()
            return
        self._upgrade = "upgrade" in head.fields
        coding = head.fields.get("transfer-encoding")
        length = head.fields.get("content-length", "0")
        if coding is not None:
            if coding.rpartition(",")[2].strip().lower() != "chunked":
                self._lose()
                return
            self._state = _CHUNK_SIZE
        elif not length.isdigit():
            self._lose()
        elif int(length):
            self._state, self._left = _LENGTH, int(length)
        else:
            self._end()

    def _feed_chunked(self, data: bytes) -> int:
        used = 0
        while used < len(data):
            if self._left:
                taken = min(self._left, len(data) - used)
                self._left -= taken
                used += taken
                continue
            end = data.find(b"\n", used)
            if end < 0:
                self._buffer += data[used:]
                if len(self._buffer) > LINE_LIMIT:
                    self._lose()
                return len(data)
            line = (self._buffer + data[used:end]).strip()
            self._buffer = b""
            used = end + 1
            if self._state == _CHUNK_SIZE:
                try:
                    size = int(line.partition(b";")[0], 16)
                except ValueError:
                    self._lose()
                    return len(data)
                self._state, self._left = (_CHUNK_END, size) if size else (_TRAILER, 0)
            elif self._state == _CHUNK_END:
                self._state = _CHUNK_SIZE
            elif not line:  # the blank line after the trailer ends the request
                self._end()
                return used
        return used

    def _end(self) -> None:
        self._state, self._left, self._buffer = _HEAD, 0, b""
        if self._upgrade:
            self._lose()
            self.upgrading = True
        else:
            self.at_start = True

    def _lose(self) -> None:
        self.lost, self.at_start, self._buffer, self._left = True, False, b"", 0
        self._state, self._upgrade = _HEAD, False


def _head_end(head: bytes, searched: int) -> int | None:
    """The offset just past the blank line that ends ``head``, or None when it has none yet.

    ``searched``: bytes at the start already searched (a blank line may straddle them).
    """
    start = max(0, searched - 3)
    ends = [at + len(mark) for mark in (b"\r\n\r\n", b"\n\n")
            if (at := head.find(mark, start)) >= 0]
    return min(ends) if ends else None
