"""Session ids that name the worker that made them.

Every Engine.IO (and Socket.IO) session id a worker makes starts with the worker's
*tag*, a number the master gives each worker it forks, in three URL-safe characters,
followed by 120 random bits (20 characters). The master reads the tag back from the
``sid=`` of a request to send it to the worker that owns the session, without keeping
any per-client state. This module is pure: the master imports it too.
"""
from __future__ import annotations

import secrets

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
TAG_CHARS = 3
TAG_LIMIT = len(ALPHABET) ** TAG_CHARS
"""Tags are taken modulo this (262,144) before they go into a sid."""
RANDOM_BYTES = 15
SID_LENGTH = TAG_CHARS + RANDOM_BYTES * 4 // 3

_VALUE = {char: value for value, char in enumerate(ALPHABET)}


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
