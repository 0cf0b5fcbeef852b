"""Where each request of an HTTP/1.x connection ends and the next begins.

The asyncio servers (uvicorn's and aiohttp's protocols) read a connection in chunks
that know nothing of requests. To look at each request line before the server does
(:mod:`workers.asyncio_protocol`), the worker follows the requests itself: a request's
head ends at its blank line, its body is ``Content-Length`` bytes long.

A connection this cannot follow is *lost* for good, and its bytes go to the server
untouched from then on: a chunked body (its end needs the chunk parser), a request
that asks for an upgrade (what follows is a websocket, not requests), ``CONNECT``, an
unreadable ``Content-Length`` or a head past :data:`HEAD_LIMIT`. The only cost of
losing one is that its later requests are served where it is, as without hand-back.

Pure: bytes in, counts out; no I/O.
"""
from __future__ import annotations

HEAD_LIMIT = 65536
"""Longest request head followed (longer: the server answers it; the connection is lost)."""

_FOLLOW_LOST = frozenset({b"transfer-encoding", b"upgrade"})
"""Headers after which the connection's next bytes are not a request of known length."""


class RequestBounds:
    """Follows the requests of one connection, chunk by chunk.

    Feed it the connection's bytes in order; :meth:`feed` tells how many belong to the
    request in progress, and :attr:`at_start` whether the next byte begins a request.
    """

    def __init__(self) -> None:
        self.at_start = True
        """The next byte fed begins a request (its request line)."""
        self.lost = False
        """The connection cannot be followed any more: every byte is the server's."""
        self._head = b""
        self._body = 0

    def feed(self, data: bytes) -> int:
        """Take the next bytes of the connection; return how many belong to the current request.

        That is all of ``data``, or the bytes up to the end of the request; then
        :attr:`at_start` is True and the rest of ``data`` begins the next request.
        """
        if self.lost:
            return len(data)
        used = 0
        if self._body == 0:
            self.at_start = False
            head = self._head + data
            end = _head_end(head, len(self._head))
            if end is None:
                self._head = head
                if len(head) > HEAD_LIMIT:
                    self._lose()
                return len(data)
            used = end - len(self._head)
            self._head = b""
            length = _body_length(head[:end])
            if length is None:
                self._lose()
                return len(data)
            if length == 0:
                self.at_start = True
                return used
            self._body = length
        taken = min(self._body, len(data) - used)
        self._body -= taken
        self.at_start = self._body == 0
        return used + taken

    def _lose(self) -> None:
        self.lost, self.at_start, self._head, self._body = True, False, b"", 0


def _head_end(head: bytes, searched: int) -> int | None:
    """The offset just past the blank line that ends ``head``, or None when it has none yet.

    ``searched``: bytes at the start already searched (a blank line may straddle them).
    """
    start = max(0, searched - 3)
    ends = [at + len(mark) for mark in (b"\r\n\r\n", b"\n\n")
            if (at := head.find(mark, start)) >= 0]
    return min(ends) if ends else None


def _body_length(head: bytes) -> int | None:
    """The body length of the request whose head is ``head``; None when it cannot be followed."""
    line, _, fields = head.partition(b"\n")
    if line.startswith(b"CONNECT "):
        return None
    length = 0
    for field in fields.split(b"\n"):
        name, colon, value = field.partition(b":")
        if not colon:
            continue
        name = name.strip().lower()
        if name in _FOLLOW_LOST:
            return None
        if name == b"content-length":
            value = value.strip()
            if not value.isdigit():
                return None
            length = int(value)
    return length
