"""Session ids that name the host and the worker that made them.

Every Engine.IO (and Socket.IO) session id a worker makes starts with its *host* id in
two URL-safe characters (0 on a single host; 1 to :data:`HOST_LIMIT` - 1 when several
hosts share sessions), then the worker's *tag*, a number the master gives each worker it
forks, in three, followed by 120 random bits (20 characters): 25 characters. The host
comes first so that a balancer can route by a prefix of the sid (nginx ``map`` on
``$arg_sid``, HAProxy ``map_beg``). The master reads the host and the tag back from the
``sid=`` of a request (:func:`request_sid`) to send it to the worker (or the host) that
owns the session, without keeping any per-client state; a worker does the same to hand a
request back. :data:`TAG_LIMIT` is the tag space, :data:`HOST_LIMIT` the host id space,
for both sides. This module is pure.
"""
from __future__ import annotations

import re
import secrets

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
HOST_CHARS = 2
HOST_LIMIT = len(ALPHABET) ** HOST_CHARS
"""The host id space (4,096 ids): hosts that share sessions are numbered from 1 to
``HOST_LIMIT - 1``; 0 is a host alone."""
TAG_CHARS = 3
TAG_LIMIT = len(ALPHABET) ** TAG_CHARS
"""The tag space (262,144 tags): the master numbers its workers from 1 to ``TAG_LIMIT - 1``
and a tag is taken modulo this before it goes into a sid."""
PREFIX_CHARS = HOST_CHARS + TAG_CHARS
RANDOM_BYTES = 15
SID_LENGTH = PREFIX_CHARS + RANDOM_BYTES * 4 // 3

_VALUE = {char: value for value, char in enumerate(ALPHABET)}
_SID = re.compile(rb"[A-Za-z0-9_-]{1,64}")


def _encode(value: int, chars: int) -> str:
    digits = []
    for _ in range(chars):
        value, digit = divmod(value, len(ALPHABET))
        digits.append(ALPHABET[digit])
    return "".join(reversed(digits))


def _decode(text: str) -> int | None:
    value = 0
    for char in text:
        digit = _VALUE.get(char)
        if digit is None:
            return None
        value = value * len(ALPHABET) + digit
    return value


def encode_tag(tag: int) -> str:
    """The three characters of a worker tag in a sid."""
    return _encode(tag % TAG_LIMIT, TAG_CHARS)


def encode_host(host: int) -> str:
    """The two characters of a host id in a sid (its first two)."""
    if not 0 <= host < HOST_LIMIT:
        raise ValueError(f"host id {host} is outside 0..{HOST_LIMIT - 1}")
    return _encode(host, HOST_CHARS)


def sid_prefix(tag: int, host: int = 0) -> str:
    """The first :data:`PREFIX_CHARS` characters of every sid of worker ``tag`` on ``host``."""
    return encode_host(host) + encode_tag(tag)


def tag_of(sid: str) -> int | None:
    """The worker tag a sid carries, or None when it is not one of our sids."""
    found = owner_of(sid)
    return None if found is None else found % TAG_LIMIT


def host_of(sid: str) -> int | None:
    """The host id a sid carries (0: a host alone), or None when it is not one of our sids."""
    found = owner_of(sid)
    return None if found is None else found // TAG_LIMIT


def owner_of(sid: str) -> int | None:
    """The *owner* a sid names: its host and worker tag as one number,
    ``host * TAG_LIMIT + tag`` (:func:`owner`), or None when it is not one of our sids."""
    if len(sid) != SID_LENGTH:
        return None
    return _decode(sid[:PREFIX_CHARS])


def owner(tag: int, host: int = 0) -> int:
    """The owner number of worker ``tag`` on ``host``, as :func:`owner_of` reads it."""
    return host * TAG_LIMIT + tag % TAG_LIMIT


def make_sid(prefix: str) -> str:
    """A new sid with the given :func:`sid_prefix` and 120 random bits."""
    return prefix + secrets.token_urlsafe(RANDOM_BYTES)


def install(engineio_server: object, tag: int, host: int = 0) -> None:
    """Make ``engineio_server`` generate sids that carry ``host`` and ``tag``.

    python-socketio uses the Engine.IO server's ``generate_id`` for its own sids too.
    """
    prefix = sid_prefix(tag, host)
    engineio_server.generate_id = lambda: make_sid(prefix)  # type: ignore[attr-defined]


def request_sid(head: bytes) -> str | None:
    """The ``sid`` query parameter of the HTTP request line at the start of ``head``.

    Only the request line is read (up to the first LF, or all of ``head``). Returns the
    first ``sid`` value if it is 1 to 64 of ``[A-Za-z0-9_-]``, else None; a value that
    the end of a truncated ``head`` may have cut short counts only if the request line
    is complete. Never raises.
    """
    for param in _query_params(head)[0]:
        if param.startswith(b"sid="):
            value = param[4:]
            return value.decode("ascii") if _SID.fullmatch(value) else None
    return None


def opens_session(head: bytes) -> bool:
    """Whether the HTTP request line at the start of ``head`` asks Engine.IO for a new
    session: an ``EIO=`` query parameter and no ``sid=`` (a handshake, polling or
    websocket, whose client tries again later when it is refused); False while the end of
    a truncated ``head`` may still hide a ``sid``. Never raises."""
    params, whole = _query_params(head)
    return (whole and any(param.startswith(b"EIO=") for param in params)
            and not any(param.startswith(b"sid=") for param in params))


def _query_params(head: bytes) -> tuple[list[bytes], bool]:
    """The query parameters (``name=value``, undecoded) of the request line at the start
    of ``head``, and whether they are all there: one that the end of a truncated ``head``
    may have cut short is left out, and more may follow it."""
    end = head.find(b"\n")
    complete = end >= 0
    if not complete:
        end = len(head)
    elif head[end - 1 : end] == b"\r":
        end -= 1
    start = head.find(b" ", 0, end) + 1
    if not start:
        return [], complete
    stop = head.find(b" ", start, end)
    cut = stop < 0 and not complete
    if stop < 0:
        stop = end
    fragment = head.find(b"#", start, stop)
    if fragment >= 0:
        stop, cut = fragment, False
    query = head.find(b"?", start, stop)
    if query < 0:
        return [], not cut
    params = head[query + 1 : stop].split(b"&")
    if cut:
        params.pop()
    return params, not cut
