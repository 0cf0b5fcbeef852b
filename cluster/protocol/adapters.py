"""The adapter URLs ``--adapter`` accepts: which broker family each scheme means.

One table, :data:`SCHEMES`, maps every URL scheme python-socketio's managers accept to
a broker family (``redis`` or ``amqp``). The master checks a URL's shape here and the
broker's answer in :mod:`cluster.broker_check`; each worker runtime maps the family
to its own manager class (``workers.managers``: ``RedisManager`` and ``KombuManager``
for eventlet; an asyncio runtime maps the same families to ``AsyncRedisManager`` and
``AsyncAioPikaManager``). A new scheme is one row here and, if it is a new family,
one row in each runtime's table.

This module is pure: it imports no broker client (they are heavy, and the master's
process stays small), and it is the one place that knows how to print an adapter URL
without its password (:func:`redact`): credentials never reach a log line or an error.
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


def redact(url: str) -> str:
    """``url`` with its password replaced by ``***`` (user names are kept)."""
    parts = _userinfo(url)
    if parts is None:
        return url
    scheme, user, password, rest = parts
    return f"{scheme}://{user}{'' if password is None else ':***'}@{rest}"


def password_of(url: str) -> str | None:
    """The password in ``url``, decoded, or None (to scrub it from a library's error text)."""
    parts = _userinfo(url)
    password = parts[2] if parts else None
    return urllib.parse.unquote(password) if password else None


def _userinfo(url: str) -> tuple[str, str, str | None, str] | None:
    """(scheme, user, password or None, what follows the ``@``), or None: no credentials."""
    scheme, sep, rest = url.partition("://")
    netloc = rest.split("/", 1)[0]
    userinfo, at, _hosts = netloc.rpartition("@")
    if not sep or not at:
        return None
    user, colon, password = userinfo.partition(":")
    return scheme, user, password if colon else None, rest[len(userinfo) + 1:]


_AUTHORITY = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>/?#]+")
"""The start of a URL in free text: its scheme and authority (where a password is)."""


def redact_text(text: str, url: str | None = None) -> str:
    """``text`` with the password of every URL in it masked (:func:`redact`), and
    ``url``'s password masked wherever it appears (:func:`scrub`).

    For text that comes from elsewhere (an app's boot error, a log line) and goes
    where credentials must not: ``/status``, the live page, the control socket.
    """
    if "://" in text:
        text = _AUTHORITY.sub(lambda match: redact(match[0]), text)
    return scrub(text, url) if url else text


def scrub(text: str, url: str) -> str:
    """``text`` (a broker library's error message) with ``url``'s password masked,
    as written in the URL, decoded, or quoted (the longest first)."""
    text = text.replace(url, redact(url))
    parts = _userinfo(url)
    password = password_of(url)
    secrets = {parts[2] if parts else None, password,
               urllib.parse.quote(password or "", safe="")} - {None, ""}
    for secret in sorted(secrets, key=len, reverse=True):  # type: ignore[arg-type]
        text = text.replace(secret, "***")  # type: ignore[arg-type]
    return text
