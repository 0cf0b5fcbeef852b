"""Host addresses as the operator writes them, and the directory's Redis key layout.

Pure and standard library only: the master parses ``--advertise`` and ``--peers`` with
these before any fork, the balancer command and the forwarder read the same shapes.
An address is ``(host, port)``; IPv6 is written ``[::1]:8000``.
"""
from __future__ import annotations

from cluster.protocol.sids import HOST_LIMIT

Address = tuple[str, int]
"""A host's advertised address: the (IP or name, port) other masters connect to."""

LEASE_MS = 6000
"""Milliseconds a directory entry lives unless renewed: a dead host is gone this soon."""

RENEW_INTERVAL = 2.0
"""Seconds between two renewals of this host's entry."""

REFRESH_INTERVAL = 1.0
"""Seconds between two readings of the whole directory."""


def parse_address(text: str) -> Address:
    """``HOST:PORT`` (or ``[IPv6]:PORT``) as an :data:`Address`; ValueError, one line."""
    text = text.strip()
    if text.startswith("["):
        host, close, rest = text[1:].partition("]")
        if not close or not rest.startswith(":") or not host:
            raise ValueError(f"bad address {text!r}: expected HOST:PORT or [IPv6]:PORT")
        port = rest[1:]
    else:
        host, colon, port = text.rpartition(":")
        if not colon or not host or ":" in host:
            raise ValueError(f"bad address {text!r}: expected HOST:PORT or [IPv6]:PORT")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"bad address {text!r}: the port must be 1..65535")
    if any(char.isspace() for char in host):
        raise ValueError(f"bad address {text!r}: a host name has no spaces")
    return host, int(port)


def format_address(address: Address) -> str:
    """The ``HOST:PORT`` text of ``address`` (``[IPv6]:PORT`` for an IPv6 literal)."""
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_advertise(text: str) -> Address:
    """The ``--advertise HOST:PORT`` value; ValueError with a one-line message."""
    try:
        return parse_address(text)
    except ValueError as exc:
        raise ValueError(f"--advertise: {exc}") from None


def parse_host_id(text: str) -> int:
    """A host id, 1 .. HOST_LIMIT - 1, from its decimal text; ValueError, one line."""
    text = text.strip()
    if not text.isdigit() or not 0 < int(text) < HOST_LIMIT:
        raise ValueError(f"bad host id {text!r}: a number from 1 to {HOST_LIMIT - 1}")
    return int(text)


def parse_peers(text: str) -> dict[int, Address]:
    """``--peers ID=HOST:PORT,ID=HOST:PORT,…`` as {host id: address}; ``""`` is no peer.

    ValueError (one line) for a malformed entry, an id out of 1..4095, an id given twice
    or an address given to two ids.
    """
    peers: dict[int, Address] = {}
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        ident, equals, address = entry.partition("=")
        if not equals:
            raise ValueError(f"--peers: bad entry {entry!r}: expected ID=HOST:PORT")
        try:
            host_id, where = parse_host_id(ident), parse_address(address)
        except ValueError as exc:
            raise ValueError(f"--peers: {exc}") from None
        if host_id in peers:
            raise ValueError(f"--peers: host id {host_id} is given twice")
        if where in peers.values():
            raise ValueError(f"--peers: {format_address(where)} is given to two host ids")
        peers[host_id] = where
    return peers


def key_of(channel: str, host_id: int) -> str:
    """The Redis key of host ``host_id``'s directory entry (its value: ``HOST:PORT``)."""
    return f"{channel}:hosts:{host_id}"


def key_pattern(channel: str) -> str:
    """The ``SCAN MATCH`` pattern of every directory key of ``channel`` (glob characters of
    the channel name escaped)."""
    escaped = "".join("\\" + char if char in "*?[]\\" else char for char in channel)
    return f"{escaped}:hosts:*"


def entries(channel: str, found: dict[str, str | None]) -> dict[int, Address]:
    """The directory from ``{key: value}`` as read from Redis: keys that are not a host's
    entry and values that are not an address are left out."""
    prefix = f"{channel}:hosts:"
    hosts: dict[int, Address] = {}
    for key, value in found.items():
        if value is None or not key.startswith(prefix):
            continue
        try:
            hosts[parse_host_id(key[len(prefix):])] = parse_address(value)
        except ValueError:
            continue
    return hosts
