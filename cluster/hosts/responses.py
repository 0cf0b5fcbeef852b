"""The answers the forwarder gives itself, as h11 events: nothing internal in a body.

A sid of a host that is not (or no longer) in the directory gets python-engineio's own
answer for an unknown session (``engineio.base_server.BaseServer._bad_request``: status
``400 BAD REQUEST``, ``text/plain``, the JSON string ``"Invalid session SID"``), so a
client reacts exactly as to a session its worker forgot: it connects again.
"""
from __future__ import annotations

import json

import h11

CLOSE = (b"connection", b"close")


def unknown_session(sid: str | None) -> tuple[h11.Response, bytes]:
    """python-engineio's ``400`` for an unknown session ``sid``."""
    body = json.dumps(f"Invalid session {sid}").encode()
    return _response(400, b"BAD REQUEST", b"text/plain", body)


def bad_gateway() -> tuple[h11.Response, bytes]:
    """``502``: the session's host cannot be reached without a loop, or did not answer."""
    return _response(502, b"Bad Gateway", b"text/plain", b"Bad Gateway")


def client_error(status: int) -> tuple[h11.Response, bytes]:
    """A ``4xx`` for a request h11 could not read (``400``; ``431``: a head over 16 KiB)."""
    reason = b"Request Header Fields Too Large" if status == 431 else b"Bad Request"
    return _response(status, reason, b"text/plain", reason)


def _response(status: int, reason: bytes, content_type: bytes,
              body: bytes) -> tuple[h11.Response, bytes]:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode()),
               CLOSE]
    return h11.Response(status_code=status, reason=reason, headers=headers), body
