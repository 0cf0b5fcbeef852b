"""What the intake does with a new connection, decided from what it has seen of it.

:class:`~cluster.intake.intake.Intake` does the I/O (accept, ``MSG_PEEK``, consuming a PROXY
header, ``SO_RCVLOWAT``, the pending set); this module is the decision it acts on, pure:
the bytes peeked so far, how long the connection has waited, a few facts about it
(:class:`Seen`) and the settings that matter (:class:`IntakeRules`) in, one of
:class:`Wait`, :class:`Route`, :class:`Refuse` or :class:`Closed` out. It never touches
a socket or a clock, so every combination of ``--route``, ``--proxy-protocol``,
``--forwarded-allow-ips`` and ``--peek-timeout`` is tested on recorded bytes
(``tests/unit/cluster/test_intake_decision.py``).

The rules, in order:

* Nothing peekable and the peer gone (``b""``): :class:`Closed`.
* The connection is *final* (decided now with what is there) once ``--peek-timeout``
  has passed, when the pending set has no room for it, or when it was woken without a
  new byte (the peer shut its side: no more will come).
* With ``--proxy-protocol``, a PROXY v1/v2 header must come first: a bad one, none by
  the time it is final, or one still cut short when final, at :data:`HEAD_LIMIT` or on
  a Unix socket (whose poll ignores ``SO_RCVLOWAT``: waiting would spin) is
  :class:`Refuse`. A whole one is consumed (:attr:`Route.proxy`, :attr:`Wait.proxy`)
  and its source becomes the client address.
* With several hosts (:attr:`IntakeRules.peers` not None), a connection from a peer's IP
  (another master's forwarder) may start with a PROXY v2 header, consumed as above; a
  PROXY v2 header from anyone else is :class:`Refuse` (a client cannot pass itself off as
  another). Plain HTTP from a peer's IP is fine (a balancer may share a host's address).
  That is :func:`decide_among_hosts`, which the intake calls instead of :func:`decide`
  with several hosts only: with one host the rule costs nothing.
* The master reads a request when it routes by sid (its request line, up to
  :data:`REQUEST_LINE_LIMIT`) or when the peer is a trusted proxy (its headers, up to
  :data:`HEAD_LIMIT`, for ``X-Forwarded-For``). It waits for more while more can tell
  more: the request line (or the headers) is not ended, and what is there can still
  grow into one (binary garbage, a TLS hello, are routed at once).
* Anything else is :class:`Route`: by the ``sid=`` of the request line when routing by
  sid, with the client address of the PROXY header or of a trusted ``X-Forwarded-For``.

This is the master's hot path (one :class:`Seen` and one decision per connection): the
records are plain slotted dataclasses, not frozen ones, which cost twice as much to
build; treat them as values all the same.
"""
from __future__ import annotations

import dataclasses

from cluster.protocol.sids import request_sid
from cluster.protocol.trust import Trust
from cluster.setup.config import Settings

from .peek import (INCOMPLETE, V2_SIGNATURE, ProxyError, ProxyHeader, forwarded_for, parse_proxy,
                   request_line_prefix)
from .pending import Address

REQUEST_LINE_LIMIT = 4096
"""Bytes of request the master waits for to see a whole request line."""
HEAD_LIMIT = 16384
"""Bytes the master peeks at most: a PROXY v2 header with its TLVs, or request headers."""


@dataclasses.dataclass(frozen=True, slots=True)
class IntakeRules:
    """The settings that change what the intake does with a connection."""

    by_sid: bool
    """``--route sid``: the request line's ``sid=`` names the worker."""
    proxy_protocol: bool
    """``--proxy-protocol``: every connection starts with a PROXY v1/v2 header."""
    trusted: Trust
    """``--forwarded-allow-ips``: peers whose ``X-Forwarded-For`` is believed."""
    peek_timeout: float
    """``--peek-timeout``: seconds a connection gets before it is decided on what it sent."""
    peers: frozenset[str] | None = None
    """Several hosts: the other masters' IPs, whose PROXY v2 header is believed (it is
    refused from anyone else); None: one host, no such rule."""

    @classmethod
    def from_settings(cls, settings: Settings) -> IntakeRules:
        """The rules of the master's ``settings`` (no peer known yet with several hosts)."""
        return cls(settings.route == "sid", settings.proxy_protocol, settings.trusted_proxies,
                   settings.peek_timeout, frozenset() if settings.several_hosts else None)

    @property
    def peeking(self) -> bool:
        """Whether connections are looked at before they are handed off."""
        return self.by_sid or self.proxy_protocol or bool(self.trusted)

    @property
    def peek_size(self) -> int:
        """The most bytes worth peeking at: the headers when a PROXY header or an
        ``X-Forwarded-For`` may matter, else the request line."""
        if self.proxy_protocol or self.trusted or self.peers is not None:
            return HEAD_LIMIT
        return REQUEST_LINE_LIMIT

    def trusts(self, client: Address | None) -> bool:
        """Whether the ``X-Forwarded-For`` of a peer at ``client`` is believed (a Unix
        socket peer, None, is local)."""
        if not self.trusted:
            return False
        return client is None or client[0] in self.trusted


@dataclasses.dataclass(slots=True)
class Seen:
    """What the intake knows of a connection, besides the bytes it peeked."""

    client: Address | None
    """The peer's address, or the PROXY header's once consumed; None for a Unix socket."""
    elapsed: float
    """Seconds since it was accepted (and held by ``TCP_DEFER_ACCEPT`` before)."""
    proxied: bool = True
    """Whether its PROXY header is consumed, or none is expected."""
    awaited: int = 0
    """When woken by readiness: the bytes it waited for (its ``SO_RCVLOWAT``); else 0."""
    crowded: bool = False
    """Whether the pending set has no room for it to wait."""
    can_wait_for_more: bool = True
    """Whether the kernel wakes it only for more bytes than seen (TCP; not a Unix socket)."""


@dataclasses.dataclass(slots=True)
class Wait:
    """Leave the connection pending until more than ``lowat - 1`` bytes are there."""

    lowat: int
    proxy: ProxyHeader | None = None
    """A PROXY header to consume first (the bytes counted by ``lowat`` come after it)."""


@dataclasses.dataclass(slots=True)
class Route:
    """Hand the connection to the worker that made ``sid``, else place it by ``client``."""

    client: Address | None
    """The address the worker gets (its ``REMOTE_ADDR``); placement by IP hashes it."""
    sid: str | None
    """The request line's ``sid=`` (routing by sid only)."""
    proxy: ProxyHeader | None = None
    """A PROXY header to consume first."""


@dataclasses.dataclass(slots=True)
class Refuse:
    """Close the connection: its PROXY header is missing, bad or truncated."""

    reason: str


@dataclasses.dataclass(slots=True)
class Closed:
    """The peer closed (or reset) the connection before it was routed: close it."""


Decision = Wait | Route | Refuse | Closed


def decide(head: bytes | None, seen: Seen, rules: IntakeRules) -> Decision:
    """What to do with a connection that has ``head`` ready to read.

    ``head`` is what a peek returned: the bytes there so far (at most
    :attr:`IntakeRules.peek_size`), ``b""`` when the peer closed, None when nothing is
    there yet. Never raises.
    """
    if head == b"":
        return Closed()
    final = seen.crowded or seen.elapsed >= rules.peek_timeout
    if head is not None and len(head) < seen.awaited:
        final = True  # woken with no new byte: the peer shut its side
    proxy = None
    client = seen.client
    if not seen.proxied:
        if head is None:
            return Refuse("sent no PROXY header") if final else Wait(1)
        try:
            header = parse_proxy(head)
        except ProxyError as exc:
            return Refuse(str(exc))
        if header is INCOMPLETE:
            if final or len(head) >= HEAD_LIMIT or not seen.can_wait_for_more:
                return Refuse("truncated PROXY header")
            return Wait(len(head) + 1)
        proxy = header
        client = header.client or client
        head = head[header.length:] or None
    trusts = rules.trusts(client)
    if head is None:
        if final or not (rules.by_sid or trusts):
            return Route(client, None, proxy)
        return Wait(1, proxy)
    if not final and seen.can_wait_for_more and _incomplete(head, trusts, rules.by_sid):
        return Wait(len(head) + 1, proxy)
    if trusts:
        forwarded = forwarded_for(head, rules.trusted)
        if forwarded is not None:  # the port stays the proxy's: unique per connection
            client = (forwarded, client[1] if client else 0)
    return Route(client, request_sid(head) if rules.by_sid else None, proxy)


def decide_among_hosts(head: bytes | None, seen: Seen, rules: IntakeRules) -> Decision:
    """:func:`decide`, with several hosts (:attr:`IntakeRules.peers` is a set).

    A connection from a peer's IP that starts with a PROXY v2 header is decided as if
    ``--proxy-protocol`` were on (its header consumed, its source the client); a PROXY v2
    header from anyone else is :class:`Refuse`; a start that may still grow into one waits
    for it. Anything else is :func:`decide`'s. The intake calls this one only with several
    hosts: with one host the rule costs nothing.
    """
    if not seen.proxied or head is None or head[:1] != b"\r":
        return decide(head, seen, rules)
    peer = seen.client is not None and seen.client[0] in rules.peers  # type: ignore[operator]
    if head.startswith(V2_SIGNATURE):
        if not peer:
            return Refuse("sent a PROXY v2 header and is not a peer (another master)")
        return decide(head, dataclasses.replace(seen, proxied=False), rules)
    if not V2_SIGNATURE.startswith(head):
        return decide(head, seen, rules)
    final = (seen.crowded or seen.elapsed >= rules.peek_timeout or len(head) < seen.awaited
             or not seen.can_wait_for_more)
    if not final:
        return Wait(len(head) + 1)
    return Refuse("truncated PROXY header") if peer else decide(head, seen, rules)


def _incomplete(head: bytes, trusts: bool, by_sid: bool) -> bool:
    """Whether more of the request would tell more, and may still come."""
    if trusts:  # X-Forwarded-For: the whole head
        ended = b"\n\r\n" in head or b"\n\n" in head
        return not ended and len(head) < HEAD_LIMIT and (b"\n" in head or request_line_prefix(head))
    return by_sid and b"\n" not in head and len(head) < REQUEST_LINE_LIMIT and request_line_prefix(head)
