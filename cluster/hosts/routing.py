"""Where the forwarder sends one request: back to this host's master, to a peer, or nowhere.

Pure: the request target, whether it carries the hop header, and the directory in; a
:class:`Decision` out. The forwarder reads the head (:mod:`cluster.hosts.http1`) and acts
on the decision (:mod:`cluster.hosts.forwarding`).
"""
from __future__ import annotations

import dataclasses
import enum
import re

from cluster.protocol.sids import TAG_LIMIT, owner_of, request_sid

from .addresses import Address

HOP_HEADER = b"x-sticky-cluster-hop"
"""The header the forwarder adds to every request it forwards (its value: our host id). A
request that carries it was forwarded once already: it is never forwarded again."""

_SID = re.compile(rb"[A-Za-z0-9_-]{1,64}")
"""A sid's characters, as :func:`cluster.protocol.sids.request_sid` takes them."""


class Route(enum.Enum):
    """What to do with a request."""

    HAND_BACK = "hand back"  #: no sid of another host: this host's master routes it
    UNKNOWN_HOST = "unknown host"  #: a sid of a host not in the directory: 400
    LOOP = "loop"  #: forwarded once already, or the peer is ourselves: 502
    FORWARD = "forward"  #: to the host the sid names


@dataclasses.dataclass(frozen=True)
class Decision:
    """A :class:`Route`, with the sid and the host it names (and that host's address to
    forward to), and the sid's owner (its host and worker tag as one number,
    :func:`cluster.protocol.sids.owner_of`)."""

    route: Route
    sid: str | None = None
    host: int | None = None
    address: Address | None = None
    owner: int | None = None


def decide(target: bytes, hop: bool, host_id: int, advertise: Address,
           hosts: dict[int, Address]) -> Decision:
    """Route a request for ``target`` (its request-target bytes).

    :param hop: the request carries :data:`HOP_HEADER`.
    :param host_id: this host's id.
    :param advertise: this host's advertised address.
    :param hosts: the directory, {host id: address}.
    """
    return decide_sid(target_sid(target), hop, host_id, advertise, hosts)


def target_sid(target: bytes) -> str | None:
    """The ``sid`` query parameter of a request target, as
    :func:`cluster.protocol.sids.request_sid` reads it from a request line.

    Hand-written for speed: the usual target (its first ``sid=`` starts a parameter,
    no ``#`` before it) is read with ``find`` and slices, 0.5 µs instead of 2 µs; any
    other goes to :func:`~cluster.protocol.sids.request_sid`."""
    query = target.find(b"?")
    if query < 0:
        return None
    at = target.find(b"sid=", query)
    if at < 0:
        return None
    if (at - 1 != query and target[at - 1] != _AMPERSAND) or target.find(b"#", 0, at) >= 0:
        return request_sid(b"GET " + target + b" HTTP/1.1\r\n")
    start = at + 4
    stop = target.find(b"&", start)
    if stop < 0:
        stop = len(target)
    fragment = target.find(b"#", start, stop)
    value = target[start:stop if fragment < 0 else fragment]
    return value.decode("ascii") if _SID.fullmatch(value) else None


_AMPERSAND = ord("&")
"""What starts a parameter past the first (a later ``?`` is part of a value)."""


def decide_sid(sid: str | None, hop: bool, host_id: int, advertise: Address,
               hosts: dict[int, Address]) -> Decision:
    """Route a request whose target names ``sid`` (None: no sid); the rest as :func:`decide`."""
    owner = None if sid is None else owner_of(sid)
    host = None if owner is None else owner // TAG_LIMIT
    if host is None or host == 0 or host == host_id:
        return Decision(Route.HAND_BACK, sid, host, None, owner)
    address = hosts.get(host)
    if hop:
        return Decision(Route.LOOP, sid, host, address, owner)
    if address is None:
        return Decision(Route.UNKNOWN_HOST, sid, host, None, owner)
    if address == advertise:
        return Decision(Route.LOOP, sid, host, address, owner)
    return Decision(Route.FORWARD, sid, host, address, owner)
