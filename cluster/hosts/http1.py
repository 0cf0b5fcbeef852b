"""The HTTP/1.1 the forwarder needs to know: where a head ends, what it says, where a body ends.

Pure: bytes in, a value (or :class:`HeadError`) out, no I/O. The forwarder relays every
message as the bytes it received (a request head gets :data:`~cluster.hosts.routing.HOP_HEADER`
added, nothing else changes), so it only needs to read a head's few facts (the target,
the framing, whether the connection goes on) and to find where each body ends (its
``Content-Length``, or its chunks), never to decode or re-encode a message.

Why not h11 (the forwarder's first parser): h11 turns every message into events and back
into bytes, 136-149 µs of CPU per forwarded polling request (its request and response;
about a third of the forwarder's CPU per forwarded request, measured on the development
machine), which polling clients behind a round-robin balancer pay on two requests in
three. This module's regular expressions and slices do the same reading in about 21 µs
(the same measure). It is as strict as h11 where a
mistake would let two parties frame a message differently: a ``Transfer-Encoding`` other
than ``chunked`` (``501``), both it and a ``Content-Length`` or two different lengths
(``400``), a header line folded or with characters not allowed, a bad chunk size.
"""
from __future__ import annotations

import re

from .routing import HOP_HEADER

CHUNKED = -1
"""A body framing: chunked (:class:`ChunkedBody` finds its end)."""
UNTIL_CLOSE = -2
"""A body framing (responses only): the body ends when the peer closes the connection."""

_TOKEN = rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+"
_REQUEST_LINE = re.compile(rb"(" + _TOKEN + rb") ([^\x00-\x20\x7f]+) HTTP/([0-9])\.([0-9])")
_STATUS_LINE = re.compile(rb"HTTP/([0-9])\.([0-9]) ([0-9]{3})(?: [^\x00-\x08\x0a-\x1f\x7f]*)?")
_VALUE = rb"[ \t]*((?:[^\x00-\x08\x0a-\x1f\x7f]*[^\x00-\x20\x7f])?)[ \t]*"
_HEADER = re.compile(rb"(" + _TOKEN + rb"):" + _VALUE)
_HEADERS = re.compile(rb"(?:" + _TOKEN + rb":" + _VALUE + rb"\r\n)*")
_READ = re.compile(rb"^(host|connection|content-length|transfer-encoding|"
                   + re.escape(HOP_HEADER) + rb"):[ \t]*([^\r\n]*?)[ \t]*\r$",
                   re.IGNORECASE | re.MULTILINE)
_HEAD_END = re.compile(rb"\n\r?\n")
_LINE_BREAK = re.compile(rb"\r?\n")
_DIGITS = re.compile(rb"[0-9]+")
_CHUNK_SIZE = re.compile(rb"[ \t]*([0-9A-Fa-f]+)[ \t]*(?:;[^\x00-\x08\x0a-\x1f\x7f]*)?\r?\n")

MAX_CHUNK_LINE = 4096
"""Longest chunk-size line or trailer line taken (h11's limit for a chunk header is 16 KiB
for the whole; a longer one is a broken message)."""


class HeadError(Exception):
    """A head that cannot be relayed: answered with :attr:`status` (a ``4xx``/``501``)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def head_end(data: bytes | bytearray, start: int = 0) -> int:
    """Where the head that ``data`` begins with ends (just past its empty line); -1 when
    it is not complete yet. ``start``: where to begin looking (bytes already looked at,
    less 3)."""
    found = data.find(b"\r\n\r\n", start)
    if found >= 0:
        return found + 4
    bare = _HEAD_END.search(data, start)  # h11 takes lines ended by a bare LF as well
    return -1 if bare is None else bare.end()


class _Head:
    """What a request head and a response head share: version, headers, framing.

    Hand-written for speed: the header lines read are gone through once (their
    ``Connection``, framing, ``Host`` and hop header noted on the way) rather than looked
    up name by name once each, and a single all-digit ``Content-Length`` is taken as it
    is: a polling request's head is read in 4.9 µs instead of 6.3 (least of 7 repeats).
    """

    __slots__ = ("head", "version", "headers", "keep_alive", "upgrade", "_lengths",
                 "_encodings", "has_host", "hop")

    def __init__(self, head: bytes, block: bytes, version: tuple[int, int]) -> None:
        self.head = head
        """The head's bytes, as received (its empty line included)."""
        self.version = version
        if not _HEADERS.fullmatch(block):
            raise HeadError(400, "a header line that cannot be read (or folded)")
        headers = self.headers = []
        """(lower-case name, value) of the header lines the forwarder reads (framing,
        ``Connection``, ``Host``, the hop header), in order."""
        lengths: list[bytes] = []
        encodings: list[bytes] = []
        close = upgrade = has_host = hop = False
        for name, value in _READ.findall(block):
            name = name.lower()
            headers.append((name, value))
            if name == b"content-length":
                lengths.append(value)
            elif name == b"host":
                has_host = True
            elif name == b"connection":
                tokens = [token.strip().lower() for token in value.split(b",")]
                close |= b"close" in tokens
                upgrade |= b"upgrade" in tokens
            elif name == b"transfer-encoding":
                encodings.append(value)
            else:
                hop = True
        self._lengths = lengths
        self._encodings = encodings
        self.has_host = has_host
        """Whether it has a ``Host`` header."""
        self.hop = hop
        """Whether it carries :data:`~cluster.hosts.routing.HOP_HEADER`."""
        self.keep_alive = not close and version >= (1, 1)
        """Whether the connection may carry another message after this one (h11's rule)."""
        self.upgrade = upgrade
        """Whether ``Connection`` names ``upgrade``."""

    def get(self, name: bytes) -> list[bytes]:
        """The values of the header ``name`` (lower case)."""
        return [value for header, value in self.headers if header == name]

    def body_framing(self) -> int:
        """The body's length, :data:`CHUNKED`, or :data:`UNTIL_CLOSE` when neither is said."""
        encodings = self._encodings
        lengths = self._lengths
        if encodings:
            if lengths:
                raise HeadError(400, "both Transfer-Encoding and Content-Length")
            if len(encodings) > 1 or encodings[0].strip().lower() != b"chunked":
                raise HeadError(501, "only Transfer-Encoding: chunked is supported")
            return CHUNKED
        if not lengths:
            return UNTIL_CLOSE
        if len(lengths) == 1 and lengths[0].isdigit() and len(lengths[0]) <= 18:
            return int(lengths[0])  # the usual case: one length, nothing to compare
        values = {value for joined in lengths for value in joined.replace(b" ", b"").split(b",")}
        if len(values) != 1:
            raise HeadError(400, "conflicting Content-Length values")
        [value] = values
        if not _DIGITS.fullmatch(value) or len(value) > 18:
            raise HeadError(400, "a bad Content-Length")
        return int(value)


def _lines(head: bytes) -> list[bytes]:
    """The head's lines, without its final empty line."""
    body = head[:-4] if head.endswith(b"\r\n\r\n") else _HEAD_END.split(head, 1)[0]
    return body.split(b"\r\n") if body.count(b"\n") == body.count(b"\r\n") else (
        _LINE_BREAK.split(body))


def _split(head: bytes) -> tuple[bytes, bytes]:
    """The head's start line, and its header lines (each ended by CRLF)."""
    if head.endswith(b"\r\n\r\n") and head.count(b"\n") == head.count(b"\r\n"):
        start, _, block = head[:-2].partition(b"\r\n")
        return start, block
    lines = _lines(head)
    return lines[0], b"".join(line + b"\r\n" for line in lines[1:])


class RequestHead(_Head):
    """A request head (:func:`parse_request`)."""

    __slots__ = ("method", "target", "framing")

    def __init__(self, head: bytes) -> None:
        start, block = _split(head)
        match = _REQUEST_LINE.fullmatch(start)
        if match is None:
            raise HeadError(400, f"a request line that cannot be read: {start[:40]!r}")
        super().__init__(head, block, (int(match.group(3)), int(match.group(4))))
        self.method = match.group(1)
        self.target = match.group(2)
        if self.version >= (1, 1) and not self.has_host:
            raise HeadError(400, "no Host header")
        self.framing = self.body_framing()
        """The body's length, or :data:`CHUNKED`."""

    def body_framing(self) -> int:
        """The body's length or :data:`CHUNKED` (a request without either has none)."""
        framing = super().body_framing()
        return 0 if framing == UNTIL_CLOSE else framing

    def retargeted(self, head: bytes, method: bytes, target: bytes) -> RequestHead:
        """This reading for ``head``, a head with the same version and header lines whose
        request line names ``method`` and ``target``."""
        other = RequestHead.__new__(RequestHead)
        other.head, other.method, other.target = head, method, target
        other.version, other.headers, other.framing = self.version, self.headers, self.framing
        other.keep_alive, other.upgrade = self.keep_alive, self.upgrade
        other.has_host, other.hop = self.has_host, self.hop
        other._lengths, other._encodings = self._lengths, self._encodings
        return other


class ResponseHead(_Head):
    """A response head (:func:`parse_response`)."""

    __slots__ = ("status", "_framing")

    def __init__(self, head: bytes) -> None:
        start, block = _split(head)
        match = _STATUS_LINE.fullmatch(start)
        if match is None:
            raise HeadError(502, f"a status line that cannot be read: {start[:40]!r}")
        super().__init__(head, block, (int(match.group(1)), int(match.group(2))))
        self.status = int(match.group(3))
        try:
            self._framing: int | HeadError = self.body_framing()
        except HeadError as exc:  # told only if the body is read (not for a 204, say)
            self._framing = exc

    def response_framing(self, method: bytes) -> int:
        """The body's framing, for a response to a ``method`` request (none for ``HEAD``,
        ``1xx``, ``204``, ``304``)."""
        if method == b"HEAD" or self.status < 200 or self.status in (204, 304):
            return 0
        if isinstance(self._framing, HeadError):
            raise HeadError(self._framing.status, str(self._framing))
        return self._framing


CACHED_HEAD = 2048
"""Longest response head (or request head's version and header lines) whose reading is kept
for when the same bytes come again."""
CACHE_SIZE = 512
"""Most readings kept of each kind (all forgotten when full)."""

_responses: dict[bytes, ResponseHead] = {}
_requests: dict[bytes, RequestHead] = {}


def parse_request(head: bytes) -> RequestHead:
    """Read a request head (as :func:`head_end` delimits it); :class:`HeadError` if bad.

    Hand-written for speed: the official clients put a new ``t`` in every polling
    request's URL, so no two request heads are alike, but a session's requests repeat
    their version and header lines: what those say (all but the method and target) is read
    once and kept by them, at most :data:`CACHED_HEAD` bytes (heads are never changed once
    read); the request line is read each time. 1.4 µs instead of 4.9 (least of 7 repeats).
    """
    line_end = head.find(b"\r\n")
    match = _REQUEST_LINE.fullmatch(head, 0, line_end) if line_end > 0 else None
    if match is None:  # the full reading refuses it, or finds its lines ended by bare LFs
        return RequestHead(head)
    rest = head[line_end - 8:]  # "HTTP/x.y" and the header lines
    known = _requests.get(rest)
    if known is None:
        known = RequestHead(head)
        _keep(_requests, rest, known)
        return known
    return known.retargeted(head, match.group(1), match.group(2))


def parse_response(head: bytes) -> ResponseHead:
    """Read a response head; :class:`HeadError` if bad.

    Hand-written for speed: a worker answers a session's polls with the same head again
    and again (its ``Date`` changes once a second, its ``Content-Length`` with the
    payload), so a head of at most :data:`CACHED_HEAD` bytes is read once and its
    reading kept (heads are never changed once read): 0.2 µs instead of 4 µs.
    """
    found = _responses.get(head)
    if found is None:
        found = ResponseHead(head)
        _keep(_responses, head, found)
    return found


def _keep(cache: dict, head: bytes, reading: _Head) -> None:
    if len(head) <= CACHED_HEAD:
        if len(cache) >= CACHE_SIZE:
            cache.clear()
        cache[head] = reading


class BodyEnd:
    """Finds where one body ends in the bytes that follow its head, piece by piece.

    :param framing: the body's length (bytes), :data:`CHUNKED` or :data:`UNTIL_CLOSE`.
    """

    __slots__ = ("_left", "_chunked", "_state", "_line")

    _SIZE, _DATA, _DATA_END, _TRAILER = range(4)

    def __init__(self, framing: int) -> None:
        self._chunked = framing == CHUNKED
        self._left = -1 if framing == UNTIL_CLOSE else (0 if self._chunked else framing)
        self._state = self._SIZE
        self._line = b""

    @property
    def done(self) -> bool:
        """Whether the body has ended."""
        return self._left == 0 and (not self._chunked or self._state is None)

    def feed(self, data: bytes | bytearray, start: int = 0) -> int:
        """Take ``data[start:]``; how many of those bytes belong to the body (all of them
        until it ends). :class:`HeadError` for a broken chunk."""
        size = len(data) - start
        if self._left < 0:  # until the connection closes
            return size
        if not self._chunked:
            taken = min(size, self._left)
            self._left -= taken
            return taken
        at = start
        end = len(data)
        while at < end and self._state is not None:
            if self._state == self._DATA:
                taken = min(end - at, self._left)
                self._left -= taken
                at += taken
                if self._left == 0:
                    self._state = self._DATA_END
                continue
            newline = data.find(b"\n", at)
            if newline < 0:
                self._line += bytes(data[at:])
                if len(self._line) > MAX_CHUNK_LINE:
                    raise HeadError(400, "a chunk line too long")
                return end - start
            line, self._line = self._line + bytes(data[at:newline + 1]), b""
            at = newline + 1
            if len(line) > MAX_CHUNK_LINE:
                raise HeadError(400, "a chunk line too long")
            self._line_read(line)
        return at - start

    def _line_read(self, line: bytes) -> None:
        if self._state == self._SIZE:
            match = _CHUNK_SIZE.fullmatch(line)
            if match is None or len(match.group(1)) > 15:
                raise HeadError(400, "a bad chunk size")
            self._left = int(match.group(1), 16)
            self._state = self._DATA if self._left else self._TRAILER
        elif self._state == self._DATA_END:
            if line not in (b"\r\n", b"\n"):
                raise HeadError(400, "a chunk not followed by CRLF")
            self._state = self._SIZE
        elif line in (b"\r\n", b"\n"):  # the trailer's end: the body's
            self._state = None
        elif not _HEADER.fullmatch(line.rstrip(b"\r\n")):
            raise HeadError(400, "a trailer line that cannot be read")


def with_headers(head: bytes, lines: bytes) -> bytes:
    """``head`` (a whole head, its empty line included) with the header ``lines`` (each
    ended by CRLF) added at its end; a head of bare-LF lines comes out in CRLF lines."""
    if head.endswith(b"\r\n\r\n") and head.count(b"\n") == head.count(b"\r\n"):
        return head[:-2] + lines + b"\r\n"
    return b"\r\n".join(_lines(head)) + b"\r\n" + lines + b"\r\n"
