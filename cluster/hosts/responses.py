"""The answers the forwarder (and, for :func:`busy`, the master) gives itself: nothing
internal in a body.

A sid of a host that is not (or no longer) in the directory gets python-engineio's own
answer for an unknown session (``engineio.base_server.BaseServer._bad_request``: status
``400 BAD REQUEST``, ``text/plain``, the JSON string ``"Invalid session SID"``), so a
client reacts exactly as to a session its worker forgot: it connects again. Every answer
closes the connection (``Connection: close``).
"""
from __future__ import annotations

import dataclasses
import json

CLOSE = (b"connection", b"close")


@dataclasses.dataclass(frozen=True)
class Answer:
    """A response head of the forwarder's own."""

    status_code: int
    reason: bytes
    headers: tuple[tuple[bytes, bytes], ...]

    def encode(self, body: bytes) -> bytes:
        """The whole response, head and ``body``."""
        lines = [b"HTTP/1.1 %d %s" % (self.status_code, self.reason)]
        lines += [name + b": " + value for name, value in self.headers]
        return b"\r\n".join(lines) + b"\r\n\r\n" + body


def unknown_session(sid: str | None) -> tuple[Answer, bytes]:
    """python-engineio's ``400`` for an unknown session ``sid``."""
    body = json.dumps(f"Invalid session {sid}").encode()
    return _response(400, b"BAD REQUEST", b"text/plain", body)


def bad_gateway() -> tuple[Answer, bytes]:
    """``502``: the session's host cannot be reached without a loop, or did not answer."""
    return _response(502, b"Bad Gateway", b"text/plain", b"Bad Gateway")


def full() -> tuple[Answer, bytes]:
    """``503``: the forwarder serves as many client connections as it may (the words
    uvicorn's 503 uses, as a full worker's)."""
    return _response(503, b"Service Unavailable", b"text/plain; charset=utf-8",
                     b"Service Unavailable")


def busy() -> bytes:
    """The master's ``503`` to a new Engine.IO session while every worker is late or full
    (``--overload refuse``): the words of a full worker's, ``Retry-After: 1``; the whole
    response, ready to send."""
    answer, body = _response(503, b"Service Unavailable", b"text/plain; charset=utf-8",
                             b"Service Unavailable")
    return dataclasses.replace(answer, headers=answer.headers + ((b"retry-after", b"1"),)
                               ).encode(body)


def client_error(status: int) -> tuple[Answer, bytes]:
    """A ``4xx`` (or ``501``) for a request that cannot be relayed (``400``; ``431``: a
    head over 16 KiB; ``501``: a transfer coding other than chunked)."""
    reason = {431: b"Request Header Fields Too Large",
              501: b"Not Implemented"}.get(status, b"Bad Request")
    return _response(status, reason, b"text/plain", reason)


def _response(status: int, reason: bytes, content_type: bytes,
              body: bytes) -> tuple[Answer, bytes]:
    headers = ((b"content-type", content_type), (b"content-length", str(len(body)).encode()),
               CLOSE)
    return Answer(status, reason, headers), body
