"""Session ids that name the worker that made them.

Every Engine.IO (and Socket.IO) session id a worker makes starts with the worker's
*tag*, a number the master gives each worker it forks, in three URL-safe characters,
followed by 120 random bits (20 characters). The master reads the tag back from the
``sid=`` of a request (:func:`request_sid`) to send it to the worker that owns the
session, without keeping any per-client state; a worker does the same to hand a request
back. :data:`TAG_LIMIT` is the tag space, for both sides. This module is pure.
"""
from __future__ import annotations

import re
import secrets

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
TAG_CHARS = 3
TAG_LIMIT = len(ALPHABET) ** TAG_CHARS
"""The tag space (262,144 tags): the master numbers its workers from 1 to ``TAG_LIMIT - 1``
and a tag is taken modulo this before it goes into a sid."""
RANDOM_BYTES = 15
SID_LENGTH = TAG_CHARS + RANDOM_BYTES * 4 // 3

_VALUE = {char: value for value, char in enumerate(ALPHABET)}
_SID = re.compile(rb"[A-Za-z0-9_-]{1,64}")


def encode_tag(tag: int) -> str:
    """The three-character sid prefix of a worker tag."""
    tag %= TAG_LIMIT
    chars = []
    for _ in range(TAG_CHARS):
        tag, digit = divmod(tag, len(ALPHABET))
        chars.append(ALPHABET[digit])
    return "".join(reversed(chars))


def tag_of(sid: str) -> int | None:
    """The worker tag a sid carries, or None when it is not one of our sids."""
    if len(sid) != SID_LENGTH:
        return None
    tag = 0
    for char in sid[:TAG_CHARS]:
        value = _VALUE.get(char)
        if value is None:
            return None
        tag = tag * len(ALPHABET) + value
    return tag


def make_sid(prefix: str) -> str:
    """A new sid with the given tag prefix and 120 random bits."""
    return prefix + secrets.token_urlsafe(RANDOM_BYTES)


def install(engineio_server: object, tag: int) -> None:
    """Make ``engineio_server`` generate sids that carry ``tag``.

    python-socketio uses the Engine.IO server's ``generate_id`` for its own sids too.
    """
    prefix = encode_tag(tag)
    engineio_server.generate_id = lambda: make_sid(prefix)  # type: ignore[attr-defined]


def request_sid(head: bytes) -> str | None:
    """The ``sid`` query parameter of the HTTP request line at the start of ``head``.

    Only the request line is read (up to the first LF, or all of ``head``). Returns the
    first ``sid`` value if it is 1 to 64 of ``[A-Za-z0-9_-]``, else None; a value that
    the end of a truncated ``head`` may have cut short counts only if the request line
    is complete. Never raises.
    """
    end = head.find(b"\n")
    complete = end >= 0
    if not complete:
        end = len(head)
    elif head[end - 1 : end] == b"\r":
        end -= 1
    start = head.find(b" ", 0, end) + 1
    if not start:
        return None
    stop = head.find(b" ", start, end)
    cut = stop < 0 and not complete
    if stop < 0:
        stop = end
    fragment = head.find(b"#", start, stop)
    if fragment >= 0:
        stop, cut = fragment, False
    query = head.find(b"?", start, stop)
    if query < 0:
        return None
    params = head[query + 1 : stop].split(b"&")
    if cut:
        params.pop()
    for param in params:
        if param.startswith(b"sid="):
            value = param[4:]
            return value.decode("ascii") if _SID.fullmatch(value) else None
    return None
