"""The adapter URLs ``--adapter`` accepts: which broker family each scheme means.

One table, :data:`SCHEMES`, maps every URL scheme python-socketio's managers accept to
a broker family (``redis`` or ``amqp``). The master checks a URL's shape here and the
broker's answer in :mod:`cluster.setup.broker_check`; each worker runtime maps the family
to its own manager class (``workers.managers``: ``RedisManager`` and ``KombuManager``
for eventlet; an asyncio runtime maps the same families to ``AsyncRedisManager`` and
``AsyncAioPikaManager``). A new scheme is one row here and, if it is a new family,
one row in each runtime's table.

This module is pure: it imports no broker client (they are heavy, and the master's
process stays small), and it is the one place that knows how to print an adapter URL
without its passwords (:func:`redact`, :func:`redact_text`): credentials never reach a
log line or an error.
"""
from __future__ import annotations

import dataclasses
import re
import urllib.parse


@dataclasses.dataclass(frozen=True)
class Scheme:
    """What one URL scheme needs.

    :param family: the broker family (``redis`` or ``amqp``), which picks the manager.
    :param module: the Python package the manager needs to talk to this broker.
    :param extra: the ``sticky-cluster[EXTRA]`` that installs ``module``, or None
                  when it is always installed.
    :param sentinel: the URL lists Sentinels (``host:port,host:port/db/service``).
    """

    family: str
    module: str
    extra: str | None = None
    sentinel: bool = False


SCHEMES: dict[str, Scheme] = {
    "redis": Scheme("redis", "redis"),
    "rediss": Scheme("redis", "redis"),
    "unix": Scheme("redis", "redis"),
    "redis+sentinel": Scheme("redis", "redis", sentinel=True),
    "valkey": Scheme("redis", "valkey", "valkey"),
    "valkeys": Scheme("redis", "valkey", "valkey"),
    "valkey+sentinel": Scheme("redis", "valkey", "valkey", sentinel=True),
    "amqp": Scheme("amqp", "kombu", "amqp"),
    "amqps": Scheme("amqp", "kombu", "amqp"),
}
"""Every ``--adapter`` scheme, as python-socketio's managers accept them."""


class AdapterURLError(ValueError):
    """An adapter URL is malformed; the message is one line, without the password."""


def scheme_of(url: str) -> Scheme:
    """The :class:`Scheme` of ``url``, after checking its shape."""
    try:
        parsed = urllib.parse.urlsplit(url)
    except ValueError as exc:
        raise AdapterURLError(f"bad adapter URL {redact(url)!r}: {exc}") from None
    scheme = SCHEMES.get(parsed.scheme.lower())
    if scheme is None:
        raise AdapterURLError(f"bad adapter URL {redact(url)!r}: the scheme must be one of "
                              + ", ".join(f"{name}://" for name in SCHEMES))
    if scheme.sentinel:
        _check_sentinels(url, parsed)
    else:
        try:
            parsed.port
        except ValueError:
            raise AdapterURLError(f"bad adapter URL {redact(url)!r}: bad port") from None
    if parsed.scheme == "unix" and not parsed.path:
        raise AdapterURLError(f"bad adapter URL {redact(url)!r}: unix:// needs a socket path")
    return scheme


def _check_sentinels(url: str, parsed: urllib.parse.SplitResult) -> None:
    hosts = parsed.netloc.rpartition("@")[2]
    for host_port in hosts.split(","):
        host, sep, port = host_port.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise AdapterURLError(f"bad adapter URL {redact(url)!r}: expected "
                                  f"{parsed.scheme}://[USER:PASSWORD@]HOST:PORT,HOST:PORT,…"
                                  "/DB/SERVICE")
    parts = parsed.path.split("/")
    if len(parts) >= 2 and parts[1] and not parts[1].isdigit():
        raise AdapterURLError(f"bad adapter URL {redact(url)!r}: the database must be a number")


_SECRET_NAME = re.compile(r"pass|secret|token|credential", re.IGNORECASE)
"""A query parameter whose name matches holds a secret (``password``, ``sentinel_password``,
``ssl_password``: redis-py takes every query parameter as a connection setting)."""

_SECRET_PARAM = re.compile(r"(?P<name>(?:^|[?&;])[^=&#?;\s'\"<>]*=)(?P<value>[^&#;\s'\"<>]*)")
"""A ``name=value`` of a query string (in a URL or in free text)."""

_NEXT_URL = re.compile(r";(?=[A-Za-z][A-Za-z0-9+.-]*://)")
"""Where a list of URLs (``amqp://…;amqp://…``, kombu's fail-over) starts the next one."""

_SCHEME = r"[A-Za-z][A-Za-z0-9+.-]*://"
_AUTHORITY = re.compile(rf"{_SCHEME}(?:[^\s'\"<>/?#;]|;(?:{_SCHEME})?)+")
"""The start of a URL in free text: its scheme and authority (where a password is), and
those of the next URLs of a ``;`` list."""


def redact(url: str) -> str:
    """``url`` with every password replaced by ``***``: the one in its user info and those
    of its query (``?password=``); user names are kept. Each URL of a ``;`` list is redacted."""
    return ";".join(_mask_query(_mask_userinfo(part)) for part in _NEXT_URL.split(url))


def secrets_of(url: str) -> set[str]:
    """Every password in ``url``, as written and decoded (to scrub it from an error text)."""
    found: set[str] = set()
    for part in _NEXT_URL.split(url):
        parts = _userinfo(part)
        if parts and parts[2]:
            found.add(parts[2])
        query = part.partition("?")[2].partition("#")[0]
        found.update(match["value"] for match in _SECRET_PARAM.finditer("?" + query)
                     if _SECRET_NAME.search(match["name"]))
    return (found | {urllib.parse.unquote(secret) for secret in found}) - {""}


def _mask_userinfo(url: str) -> str:
    parts = _userinfo(url)
    if parts is None:
        return url
    scheme, user, password, rest = parts
    return f"{scheme}://{user}{'' if password is None else ':***'}@{rest}"


def _mask_query(text: str) -> str:
    """``text`` with the value of every secret ``name=value`` after a ``?``, ``&`` or ``;``
    masked (to the next space in free text: what ends a value there is unknown)."""
    if "=" not in text:
        return text
    return _SECRET_PARAM.sub(
        lambda m: m["name"] + ("***" if m["value"] and not _MASKED.match(m["value"])
                               and _SECRET_NAME.search(m["name"]) else m["value"]), text)


_MASKED = re.compile(r"\*\*\*[:,.;)\]]*$")
"""A value masked already (masking again keeps the punctuation that followed it)."""


def _userinfo(url: str) -> tuple[str, str, str | None, str] | None:
    """(scheme, user, password or None, what follows the ``@``), or None: no credentials."""
    scheme, sep, rest = url.partition("://")
    netloc = rest.split("/", 1)[0]
    userinfo, at, _hosts = netloc.rpartition("@")
    if not sep or not at:
        return None
    user, colon, password = userinfo.partition(":")
    return scheme, user, password if colon else None, rest[len(userinfo) + 1:]


def redact_text(text: str, url: str | None = None) -> str:
    """``text`` with the password of every URL in it masked (:func:`redact`), and
    ``url``'s passwords masked wherever they appear (:func:`scrub`).

    The one masking function for text that goes where credentials must not: log lines
    (:mod:`cluster.setup.logs` applies it to every record), errors shown to the user,
    ``/status``, the live page, the control socket.
    """
    if "://" in text:
        text = _AUTHORITY.sub(lambda match: redact(match[0]), text)
    text = _mask_query(text)
    return scrub(text, url) if url else text


def scrub(text: str, url: str) -> str:
    """``text`` (a broker library's error message) with ``url``'s passwords masked,
    as written in the URL, decoded, or quoted (the longest first)."""
    text = text.replace(url, redact(url))
    secrets = secrets_of(url)
    secrets |= {urllib.parse.quote(secret, safe="") for secret in secrets}
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text
