"""Pure parsers for the first bytes of a connection, as the master peeks them.

Nothing here touches a socket: each function takes the bytes seen so far (which may be
truncated anywhere, or be garbage) and never raises except as documented. The ``sid`` of
a request line, which the workers read too, is :func:`cluster.protocol.sids.request_sid`.
"""
from __future__ import annotations

import dataclasses
import enum
import ipaddress
import re
from typing import Final, Literal

from cluster.protocol.trust import IPAddress, Trust, parse_ip

_REQUEST_LINE_START = re.compile(rb"(?:[A-Z]{1,20}(?: [\x21-\x7e]*(?: [\x21-\x7e]*\r?)?)?)?")

_V1_SIGNATURE: Final = b"PROXY "
_V1_MAX: Final = 107  # longest v1 line, CRLF included
_V1_PROTOCOLS: Final = (b"TCP4", b"TCP6", b"UNKNOWN")
_V1_ADDRESS_CHARS: Final = {4: b"0123456789.", 6: b"0123456789abcdefABCDEF:."}
_V1_ADDRESS_MAX: Final = {4: 15, 6: 45}
V2_SIGNATURE: Final = b"\r\n\r\n\x00\r\nQUIT\n"
"""The 12 bytes a PROXY protocol v2 header starts with (a peer's forwarder sends one)."""
_V2_FIXED: Final = 16  # signature, version/command, family/transport, length
# family/transport byte -> (size of the address block, address class if any)
_V2_FAMILIES: Final = {
    0x00: (0, None),  # AF_UNSPEC
    0x11: (12, ipaddress.IPv4Address),  # AF_INET, stream
    0x12: (12, ipaddress.IPv4Address),  # AF_INET, datagram
    0x21: (36, ipaddress.IPv6Address),  # AF_INET6, stream
    0x22: (36, ipaddress.IPv6Address),  # AF_INET6, datagram
    0x31: (216, None),  # AF_UNIX, stream
    0x32: (216, None),  # AF_UNIX, datagram
}


class ProxyError(ValueError):
    """A malformed PROXY protocol header; the message is a short reason."""


class Incomplete(enum.Enum):
    """The type of :data:`INCOMPLETE`."""

    INCOMPLETE = "INCOMPLETE"


INCOMPLETE: Final = Incomplete.INCOMPLETE
"""Returned by :func:`parse_proxy` when more bytes may still make a valid header."""


@dataclasses.dataclass(frozen=True, slots=True)
class ProxyHeader:
    """A parsed PROXY protocol header.

    ``length`` is how many bytes the header takes (consume them before the payload);
    ``client`` is the source ``(ip, port)``, or None when the header carries no usable
    source (v1 ``UNKNOWN``, v2 ``LOCAL``, v2 ``AF_UNSPEC`` or ``AF_UNIX``): then use the
    connection's own peer address.
    """

    length: int
    client: tuple[str, int] | None


def request_line_prefix(head: bytes) -> bool:
    """Whether ``head`` can still grow into an HTTP request line (no LF seen yet).

    True for an empty ``head`` and for any beginning of ``METHOD TARGET VERSION\\r``
    with an upper-case method and visible-ASCII target and version; False as soon as
    ``head`` holds an LF or anything else (binary garbage, a TLS hello). Never raises.
    """
    return _REQUEST_LINE_START.fullmatch(head) is not None


def parse_proxy(head: bytes) -> ProxyHeader | Literal[Incomplete.INCOMPLETE]:
    """Parse a PROXY protocol v1 or v2 header at the start of ``head``.

    Returns a :class:`ProxyHeader`, or :data:`INCOMPLETE` when ``head`` is a valid
    beginning of a header but too short (an empty ``head`` included). Raises
    :class:`ProxyError` when no valid header can start with ``head``.
    """
    if head.startswith(V2_SIGNATURE):
        return _parse_v2(head)
    if head.startswith(_V1_SIGNATURE):
        return _parse_v1(head)
    if V2_SIGNATURE.startswith(head) or _V1_SIGNATURE.startswith(head):
        return INCOMPLETE
    raise ProxyError("no PROXY protocol signature")


def _parse_v1(head: bytes) -> ProxyHeader | Literal[Incomplete.INCOMPLETE]:
    lf = head.find(b"\n", len(_V1_SIGNATURE), _V1_MAX)
    if lf >= 0:
        if head[lf - 1] != ord("\r"):
            raise ProxyError("v1 line not ended by CRLF")
        return ProxyHeader(lf + 1, _v1_client(head[len(_V1_SIGNATURE) : lf - 1], True))
    if len(head) >= _V1_MAX:
        raise ProxyError(f"v1 line longer than {_V1_MAX} bytes")
    if head.endswith(b"\r"):  # only the LF is missing: the line must be whole
        _v1_client(head[len(_V1_SIGNATURE) : -1], True)
    else:
        _v1_client(head[len(_V1_SIGNATURE) :], False)
    return INCOMPLETE


def _v1_client(line: bytes, complete: bool) -> tuple[str, int] | None:
    """The client of a v1 line after ``PROXY `` (CRLF excluded), or None for UNKNOWN.

    When ``complete`` is false the line may be cut short: it is only checked to be the
    beginning of a valid line, and None is returned.
    """
    fields = line.split(b" ")
    protocol = fields[0]
    if len(fields) == 1 and not complete:
        if not any(known.startswith(protocol) for known in _V1_PROTOCOLS):
            raise ProxyError("bad v1 protocol")
        return None
    if protocol == b"UNKNOWN":  # the rest of the line is to be ignored
        return None
    if protocol not in _V1_PROTOCOLS:
        raise ProxyError("bad v1 protocol")
    version = 4 if protocol == b"TCP4" else 6
    args = fields[1:]
    if len(args) > 4 or (complete and len(args) < 4):
        raise ProxyError("v1 line needs 4 fields after the protocol")
    for index, arg in enumerate(args):
        partial = not complete and index == len(args) - 1
        if index < 2 and not _v1_address_ok(arg, version, partial):
            raise ProxyError(f"bad v1 IPv{version} address")
        if index >= 2 and not _v1_port_ok(arg, partial):
            raise ProxyError("bad v1 port")
    if not complete:
        return None
    return str(ipaddress.ip_address(args[0].decode("ascii"))), int(args[2])


def _v1_address_ok(raw: bytes, version: int, partial: bool) -> bool:
    """Whether ``raw`` is an IPv``version`` literal, or when ``partial`` can start one."""
    if partial:
        return len(raw) <= _V1_ADDRESS_MAX[version] and not raw.translate(None, _V1_ADDRESS_CHARS[version])
    addr = parse_ip(raw.decode("latin-1"))
    return addr is not None and addr.version == version


def _v1_port_ok(raw: bytes, partial: bool) -> bool:
    """Whether ``raw`` is a port number, or when ``partial`` can start one."""
    if partial:
        return len(raw) <= 5 and (not raw or raw.isdigit())
    return _port(raw) is not None


def _port(raw: bytes) -> int | None:
    """``raw`` as a decimal port number 0-65535, or None."""
    if not 0 < len(raw) <= 5 or not raw.isdigit():
        return None
    port = int(raw)
    return port if port <= 65535 else None


def _parse_v2(head: bytes) -> ProxyHeader | Literal[Incomplete.INCOMPLETE]:
    if len(head) > 12 and head[12] not in (0x20, 0x21):
        raise ProxyError("bad v2 version" if head[12] >> 4 != 2 else "bad v2 command")
    local = len(head) > 12 and head[12] == 0x20
    if len(head) > 13 and not local and head[13] not in _V2_FAMILIES:
        raise ProxyError("bad v2 address family or transport")
    if len(head) < _V2_FIXED:
        return INCOMPLETE
    length = _V2_FIXED + int.from_bytes(head[14:16], "big")
    if local:  # health check from the proxy itself: the address block is ignored
        return INCOMPLETE if len(head) < length else ProxyHeader(length, None)
    size, address = _V2_FAMILIES[head[13]]
    if length < _V2_FIXED + size:
        raise ProxyError("v2 length shorter than its address block")
    if len(head) < length:
        return INCOMPLETE
    if address is None:
        return ProxyHeader(length, None)
    width = (size - 4) // 2  # two addresses then two ports
    source = address(head[_V2_FIXED : _V2_FIXED + width])
    port = int.from_bytes(head[_V2_FIXED + 2 * width : _V2_FIXED + 2 * width + 2], "big")
    return ProxyHeader(length, (str(source), port))


def forwarded_for(head: bytes, trusted: Trust) -> str | None:
    """The client address from the ``X-Forwarded-For`` headers of a peeked request.

    Only header lines ended within ``head`` count, up to the blank line ending the
    headers; several such headers are joined in order. Walking the entries from right
    to left, returns the first one not in ``trusted`` (the leftmost one if all are),
    as a normalized IP string; None when there is no entry or an entry met on the way
    is not an IP (``[v6]`` and ``v4:port`` forms are accepted). Never raises.
    """
    pos = head.find(b"\n") + 1
    if not pos:
        return None
    values: list[bytes] = []
    in_xff = False
    while (lf := head.find(b"\n", pos)) >= 0:
        line = head[pos:lf]
        pos = lf + 1
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line:
            break
        if line[:1] in (b" ", b"\t"):  # obsolete folding: refuse to guess
            if in_xff:
                return None
            continue
        in_xff = line[15:16] == b":" and line[:15].lower() == b"x-forwarded-for"
        if in_xff:
            values.append(line[16:])
    if not values:
        return None
    client = None
    for entry in reversed(b",".join(values).split(b",")):
        client = _forwarded_ip(entry.strip(b" \t"))
        if client is None:
            return None
        if client not in trusted:
            break
    return str(client)


def _forwarded_ip(entry: bytes) -> IPAddress | None:
    """An ``X-Forwarded-For`` entry as an address: ``ip``, ``[ipv6]``, ``[ipv6]:port``
    or ``ipv4:port``; None if it is none of these."""
    if entry.startswith(b"["):
        close = entry.find(b"]")
        if close < 0:
            return None
        rest = entry[close + 1 :]
        if rest and (rest[:1] != b":" or _port(rest[1:]) is None):
            return None
        addr = parse_ip(entry[1:close].decode("latin-1"))
        return addr if addr is not None and addr.version == 6 else None
    if entry.count(b":") == 1:
        host, _, port = entry.partition(b":")
        addr = parse_ip(host.decode("latin-1"))
        return addr if addr is not None and addr.version == 4 and _port(port) is not None else None
    return parse_ip(entry.decode("latin-1"))
