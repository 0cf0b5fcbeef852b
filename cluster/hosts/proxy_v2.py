"""The PROXY protocol v2 header the forwarder writes first on each connection to a peer.

The peer's master reads it (:func:`cluster.intake.peek.parse_proxy`, which parses v1 and v2)
and takes its source as the client's address; it believes it only from a peer's IP. This
module only encodes. Pure, standard library only.
"""
from __future__ import annotations

import ipaddress

SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
"""The 12 bytes every v2 header starts with (the same as :mod:`cluster.intake.peek`'s)."""

_VERSION_LOCAL = 0x20
_VERSION_PROXY = 0x21
_TCP_OVER_IPV4 = 0x11
_TCP_OVER_IPV6 = 0x21


def local() -> bytes:
    """A ``LOCAL`` header: no client address to pass (the peer uses the connection's own)."""
    return SIGNATURE + bytes((_VERSION_LOCAL, 0)) + (0).to_bytes(2, "big")


def header(source: tuple[str, int] | None, destination: tuple[str, int]) -> bytes:
    """A ``PROXY`` header saying a TCP client at ``source`` connected to ``destination``.

    When ``source`` is None or not an IP address (a client on a Unix socket), or the two
    cannot be written in one family, the header is :func:`local`. An IPv4 address beside
    an IPv6 one is written IPv4-mapped.
    """
    try:
        client = ipaddress.ip_address(source[0]) if source else None
        server = ipaddress.ip_address(destination[0].partition("%")[0])
    except ValueError:
        return local()
    if client is None or not 0 <= source[1] < 65536:  # type: ignore[index]
        return local()
    if client.version != server.version:
        client, server = _as_v6(client), _as_v6(server)
    family = _TCP_OVER_IPV4 if client.version == 4 else _TCP_OVER_IPV6
    block = (client.packed + server.packed + source[1].to_bytes(2, "big")  # type: ignore[index]
             + destination[1].to_bytes(2, "big"))
    return SIGNATURE + bytes((_VERSION_PROXY, family)) + len(block).to_bytes(2, "big") + block


def _as_v6(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> ipaddress.IPv6Address:
    if isinstance(address, ipaddress.IPv6Address):
        return address
    return ipaddress.IPv6Address("::ffff:" + str(address))
