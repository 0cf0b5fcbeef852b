"""Tests for the master's pure peek parsers (cluster.intake.peek) and trusted networks
(cluster.protocol.trust)."""
from __future__ import annotations

import ipaddress
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cluster.intake.peek import (INCOMPLETE, ProxyError, ProxyHeader, forwarded_for, parse_proxy,
                                 request_line_prefix)
from cluster.protocol.trust import Trust

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def v2(command: int, family: int, body: bytes, length: int | None = None) -> bytes:
    """A PROXY v2 header with the given command/family bytes and body."""
    size = len(body) if length is None else length
    return V2_SIGNATURE + bytes([command, family]) + struct.pack("!H", size) + body


def v2_inet(src: str, dst: str, sport: int, dport: int, tlvs: bytes = b"") -> bytes:
    """A PROXY v2 ``PROXY`` command header over TCP for these endpoints."""
    source, destination = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    family = 0x11 if source.version == 4 else 0x21
    return v2(0x21, family, source.packed + destination.packed + struct.pack("!HH", sport, dport) + tlvs)


def tlv(kind: int, value: bytes) -> bytes:
    return struct.pack("!BH", kind, len(value)) + value


# -- request_line_prefix -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("head", "can_grow"),
    [
        (b"", True),
        (b"G", True),
        (b"POST /socket.io/?EIO=4&sid=abc", True),
        (b"GET /socket.io/?EIO=4 HTTP/1.1\r", True),
        (b"GET /socket.io/?EIO=4 HTTP/1.1\r\n", False),  # an LF: the line is whole
        (b"get / HTTP/1.1", False),
        (b"GET /a b HTTP/1.1", False),
        (b"GET /\x00", False),
        (b"GET /\xff", False),
        (b"GET / HTTP/1.1\rX", False),
        (b"\x16\x03\x01\x02\x00", False),
        (b"PROXY TCP4 ", True),  # looks like a method and a target
    ],
)
def test_request_line_prefix_examples(head: bytes, can_grow: bool) -> None:
    assert request_line_prefix(head) is can_grow


@given(st.sampled_from(["GET", "POST", "OPTIONS"]),
       st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=80),
       st.sampled_from(["HTTP/1.0", "HTTP/1.1"]))
def test_request_line_prefix_every_cut(method: str, target: str, version: str) -> None:
    line = f"{method} {target} {version}\r\n".encode()
    for cut in range(len(line)):
        assert request_line_prefix(line[:cut])
    assert not request_line_prefix(line)


@given(st.binary(max_size=200))
def test_request_line_prefix_arbitrary_bytes(head: bytes) -> None:
    if request_line_prefix(head):
        assert b"\n" not in head and all(0x20 <= byte < 0x7F for byte in head.rstrip(b"\r"))


# -- parse_proxy: v1 -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "client"),
    [
        (b"PROXY TCP4 192.168.0.1 10.0.0.1 56324 443\r\n", ("192.168.0.1", 56324)),
        (b"PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n", ("0.0.0.0", 0)),
        (b"PROXY TCP6 2001:DB8:0:0::1 ::1 1 2\r\n", ("2001:db8::1", 1)),
        (b"PROXY TCP6 ::ffff:1.2.3.4 ::1 1 2\r\n", (str(ipaddress.ip_address("::ffff:1.2.3.4")), 1)),
        (b"PROXY UNKNOWN\r\n", None),
        (b"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n", None),
        (b"PROXY TCP6 " + b"ffff:" * 7 + b"ffff " + b"ffff:" * 7 + b"ffff 65535 65535\r\n", ("ffff:" * 7 + "ffff", 65535)),
    ],
)
def test_proxy_v1(header: bytes, client: tuple[str, int] | None) -> None:
    assert len(header) <= 107
    assert parse_proxy(header + b"GET / HTTP/1.1\r\n") == ProxyHeader(len(header), client)
    for cut in range(len(header)):
        assert parse_proxy(header[:cut]) is INCOMPLETE, header[:cut]


@pytest.mark.parametrize(
    "head",
    [
        b"GET / HTTP/1.1\r\n",
        b"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY UDP4",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
        b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3",
        b"PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n",
        b"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n",
        b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n",
        b"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n",
        b"PROXY TCP6 fe80::1%",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 -2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8  2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 123456",
        b"PROXY TCP4 1.2.3.4x",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r",  # only the LF missing, but the line is bad
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX",
        b"PROXY \r\n",
        b"PROXY UNKNOWN" + b" " * 100,
        b"PROXY TCP6 " + b"0" * 96,
    ],
)
def test_proxy_v1_malformed(head: bytes) -> None:
    with pytest.raises(ProxyError):
        parse_proxy(head)


def test_proxy_v1_line_limit() -> None:
    line = b"PROXY UNKNOWN "
    assert parse_proxy(line.ljust(105, b"x") + b"\r\n") == ProxyHeader(107, None)
    assert parse_proxy(line.ljust(106, b"x")) is INCOMPLETE
    with pytest.raises(ProxyError, match="107"):
        parse_proxy(line.ljust(106, b"x") + b"\r\n")


# -- parse_proxy: v2 -----------------------------------------------------------------------

V2_IPV4 = v2_inet("203.0.113.7", "10.0.0.1", 51000, 443)
V2_IPV6 = v2_inet("2001:db8::7", "2001:db8::1", 1, 65535)
V2_TLVS = v2_inet("198.51.100.1", "10.0.0.1", 80, 8080, tlv(0x02, b"example.com") + tlv(0x04, b"\0" * 3))


@pytest.mark.parametrize(
    ("header", "client"),
    [
        (V2_IPV4, ("203.0.113.7", 51000)),
        (V2_IPV6, ("2001:db8::7", 1)),
        (V2_TLVS, ("198.51.100.1", 80)),
        (v2(0x21, 0x12, bytes(12)), ("0.0.0.0", 0)),  # UDP over IPv4
        (v2(0x20, 0x00, b""), None),  # LOCAL
        (v2(0x20, 0x11, bytes(12)), None),  # LOCAL: the address block is ignored
        (v2(0x20, 0xFF, b"junk"), None),  # LOCAL: even the family is ignored
        (v2(0x21, 0x00, tlv(0x01, b"h2")), None),  # AF_UNSPEC
        (v2(0x21, 0x31, b"/tmp/a".ljust(108, b"\0") * 2), None),  # AF_UNIX
    ],
)
def test_proxy_v2(header: bytes, client: tuple[str, int] | None) -> None:
    assert parse_proxy(header + b"\x16\x03\x01payload") == ProxyHeader(len(header), client)
    for cut in range(len(header)):
        assert parse_proxy(header[:cut]) is INCOMPLETE, cut


def test_proxy_v2_longest() -> None:
    header = v2_inet("1.2.3.4", "5.6.7.8", 1, 2, tlv(0xE0, bytes(65535 - 12 - 3)))
    assert len(header) == 16 + 65535
    assert parse_proxy(header) == ProxyHeader(16 + 65535, ("1.2.3.4", 1))
    assert parse_proxy(header[:-1]) is INCOMPLETE


@pytest.mark.parametrize(
    ("head", "reason"),
    [
        (V2_SIGNATURE[:11] + b"X", "signature"),
        (V2_SIGNATURE + b"\x11", "version"),
        (V2_SIGNATURE + b"\x31\x11", "version"),
        (V2_SIGNATURE + b"\x22", "command"),
        (V2_SIGNATURE + b"\x2f\x11\x00\x0c", "command"),
        (V2_SIGNATURE + b"\x21\x13", "family"),
        (V2_SIGNATURE + b"\x21\x10", "family"),
        (V2_SIGNATURE + b"\x21\x41", "family"),
        (v2(0x21, 0x11, bytes(11)), "shorter"),
        (v2(0x21, 0x21, bytes(12)), "shorter"),
        (v2(0x21, 0x31, bytes(100)), "shorter"),
        (v2(0x21, 0x11, b"", length=11), "shorter"),  # detected before the block arrives
    ],
)
def test_proxy_v2_malformed(head: bytes, reason: str) -> None:
    with pytest.raises(ProxyError, match=reason):
        parse_proxy(head)


@pytest.mark.parametrize("head", [b"", b"P", b"PROXY", b"PROXY ", b"\r", b"\r\n\r\n\x00", V2_SIGNATURE])
def test_proxy_signature_prefixes_are_incomplete(head: bytes) -> None:
    assert parse_proxy(head) is INCOMPLETE


@pytest.mark.parametrize("head", [b"\x00", b"GET / HTTP/1.1\r\n\r\n", b"PROXX", b"\r\n\r\n\x01", b"\x16\x03\x01"])
def test_proxy_no_signature(head: bytes) -> None:
    with pytest.raises(ProxyError, match="signature"):
        parse_proxy(head)


# -- parse_proxy: properties ---------------------------------------------------------------


def check_proxy_result(head: bytes) -> object:
    """parse_proxy's result for ``head``, checked to be well-formed (ProxyError allowed)."""
    try:
        result = parse_proxy(head)
    except ProxyError as error:
        assert str(error)
        return error
    if result is not INCOMPLETE:
        assert isinstance(result, ProxyHeader)
        assert 0 < result.length <= len(head)
        if result.client is not None:
            ip, port = result.client
            assert str(ipaddress.ip_address(ip)) == ip
            assert 0 <= port <= 65535
    return result


@given(st.binary(max_size=300))
def test_proxy_arbitrary_bytes(head: bytes) -> None:
    check_proxy_result(head)


@given(
    st.sampled_from([b"PROXY ", b"PROXY TCP4 ", b"PROXY TCP6 ", b"PROXY UNKNOWN", b"PROXY TCP4 1.2.3.4 ", V2_SIGNATURE]),
    st.binary(max_size=300),
)
def test_proxy_signature_and_random_tail(prefix: bytes, tail: bytes) -> None:
    check_proxy_result(prefix + tail)


@given(st.sampled_from([V2_IPV4, V2_IPV6, V2_TLVS]), st.integers(12, 60), st.binary(min_size=1, max_size=8))
def test_proxy_v2_corrupted(header: bytes, at: int, junk: bytes) -> None:
    check_proxy_result(header[:at] + junk + header[at + len(junk) :])


def v1_header(source: ipaddress.IPv4Address | ipaddress.IPv6Address, destination: str, sport: int, dport: int) -> bytes:
    protocol = "TCP4" if source.version == 4 else "TCP6"
    return f"PROXY {protocol} {source} {destination} {sport} {dport}\r\n".encode()


ports = st.integers(0, 65535)


@given(st.data(), st.sampled_from([4, 6]), ports, ports, st.binary(max_size=64))
def test_proxy_round_trip(data: st.DataObject, version: int, sport: int, dport: int, tail: bytes) -> None:
    source = data.draw(st.ip_addresses(v=version))
    destination = data.draw(st.ip_addresses(v=version))
    tlvs = data.draw(st.lists(st.tuples(st.integers(0, 255), st.binary(max_size=20)), max_size=3))
    for header in (
        v1_header(source, str(destination), sport, dport),
        v2_inet(str(source), str(destination), sport, dport, b"".join(tlv(k, v) for k, v in tlvs)),
    ):
        assert parse_proxy(header + tail) == ProxyHeader(len(header), (str(source), sport))
        for cut in range(len(header)):
            assert parse_proxy(header[:cut]) is INCOMPLETE


networks = st.one_of(
    st.builds(lambda ip, bits: ipaddress.ip_network((ip, bits), strict=False), st.ip_addresses(v=4), st.integers(0, 32)),
    st.builds(lambda ip, bits: ipaddress.ip_network((ip, bits), strict=False), st.ip_addresses(v=6), st.integers(0, 128)),
)


def trusted_by_model(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, networks: list) -> bool:
    """Whether ``ip`` is in one of ``networks``, an IPv4-mapped address also as IPv4."""
    mapped = ip.ipv4_mapped if ip.version == 6 else None
    return any(ip in net or (mapped is not None and mapped in net) for net in networks)


# -- forwarded_for -------------------------------------------------------------------------

PROXIES = Trust.parse("127.0.0.1, 10.0.0.0/8, ::1")


def request(*headers: str, end: bool = True) -> bytes:
    """A request head with these header lines."""
    return ("GET /socket.io/?EIO=4 HTTP/1.1\r\n" + "".join(h + "\r\n" for h in headers) + ("\r\n" if end else "")).encode()


@pytest.mark.parametrize(
    ("head", "client"),
    [
        (request("Host: x", "X-Forwarded-For: 203.0.113.9"), "203.0.113.9"),
        (request("X-Forwarded-For: 198.51.100.1, 203.0.113.9, 10.1.1.1"), "203.0.113.9"),
        (request("x-forwarded-for: 198.51.100.1,203.0.113.9 , 10.1.1.1,127.0.0.1"), "203.0.113.9"),
        (request("X-FORWARDED-FOR:   10.0.0.2,10.0.0.3  "), "10.0.0.2"),  # all trusted: leftmost
        (request("X-Forwarded-For: garbage, 203.0.113.9, 10.1.1.1"), "203.0.113.9"),  # not reached
        (request("X-Forwarded-For: 203.0.113.9, garbage, 10.1.1.1"), None),
        (request("X-Forwarded-For: garbage, 10.1.1.1"), None),
        (request("X-Forwarded-For: 203.0.113.9,, 10.1.1.1"), None),
        (request("X-Forwarded-For: 203.0.113.9, unknown"), None),
        (request("X-Forwarded-For:"), None),
        (request("Host: x"), None),
        (request("X-Forwarded-For: 198.51.100.1", "Host: x", "X-Forwarded-For: 10.1.1.1"), "198.51.100.1"),
        (request("X-Forwarded-For: 10.1.1.1", "X-Forwarded-For: 198.51.100.1"), "198.51.100.1"),
        (request("X-Forwarded-For: 203.0.113.9:5678, 10.1.1.1:80"), "203.0.113.9"),
        (request("X-Forwarded-For: [2001:DB8::1], [::1]:443"), "2001:db8::1"),
        (request("X-Forwarded-For: 2001:db8:0::1, ::1"), "2001:db8::1"),
        (request("X-Forwarded-For: ::ffff:10.1.1.1, 203.0.113.9"), "203.0.113.9"),
        (request("X-Forwarded-For: 203.0.113.9, ::ffff:10.1.1.1"), "203.0.113.9"),  # mapped is trusted
        (request("X-Forwarded-For: 203.0.113.9:99999"), None),
        (request("X-Forwarded-For: [1.2.3.4]"), None),
        (request("X-Forwarded-For: [::1"), None),
        (request("X-Forwarded-For: fe80::1%eth0"), None),
        (request("X-Forwarded-For: 01.2.3.4"), None),
        (request("X-Forwarded-For : 203.0.113.9"), None),
        (request("X-Forwarded-Forx: 203.0.113.9"), None),
        (request("X-Forwarded-For: 198.51.100.1", "\t, 10.1.1.1"), None),  # folded: refused
        (request("Host: a", " b", "X-Forwarded-For: 198.51.100.1"), "198.51.100.1"),
        # truncation and the end of the headers
        (request("X-Forwarded-For: 198.51.100.1", "X-Forwarded-For: 203.0.", end=False)[:-2], "198.51.100.1"),
        (request("X-Forwarded-For: 198.51.100.1", end=False)[:-1], None),
        (request("X-Forwarded-For: 198.51.100.1", end=False)[:-2], None),
        (request("Host: x") + b"X-Forwarded-For: 203.0.113.9\r\n", None),  # in the body
        (b"GET / HTTP/1.1\nX-Forwarded-For: 203.0.113.9\n\n", "203.0.113.9"),
        (b"X-Forwarded-For: 203.0.113.9\r\n\r\n", None),  # that was the request line
        (b"", None),
    ],
)
def test_forwarded_for_examples(head: bytes, client: str | None) -> None:
    assert forwarded_for(head, PROXIES) == client


def test_forwarded_for_trust_levels() -> None:
    head = request("X-Forwarded-For: 198.51.100.1, 203.0.113.9, 10.1.1.1")
    assert forwarded_for(head, Trust.parse("")) == "10.1.1.1"
    assert forwarded_for(head, Trust.parse("10.0.0.0/8, 203.0.113.0/24")) == "198.51.100.1"
    assert forwarded_for(head, Trust.parse("*")) == "198.51.100.1"


@given(st.binary(max_size=300), st.sampled_from([Trust.parse(""), PROXIES, Trust.parse("*")]))
def test_forwarded_for_arbitrary_bytes(head: bytes, trusted: Trust) -> None:
    client = forwarded_for(head, trusted)
    assert client is None or str(ipaddress.ip_address(client)) == client


@given(st.binary(max_size=200), st.sampled_from([Trust.parse(""), PROXIES, Trust.parse("*")]))
def test_forwarded_for_random_values(value: bytes, trusted: Trust) -> None:
    head = b"GET / HTTP/1.1\r\nX-Forwarded-For: " + value + b"\r\n\r\n"
    client = forwarded_for(head, trusted)
    assert client is None or str(ipaddress.ip_address(client)) == client


@given(st.lists(st.ip_addresses(), min_size=1, max_size=6), st.lists(networks, max_size=3), st.integers(0, 3))
def test_forwarded_for_model(chain: list, networks: list, split: int) -> None:
    trusted = Trust.parse(",".join(map(str, networks)))
    entries = [f"[{ip}]" if ip.version == 6 and split == 1 else str(ip) for ip in chain]
    at = min(split, len(entries))
    head = request(*(f"X-Forwarded-For: {', '.join(part)}" for part in (entries[:at], entries[at:]) if part))
    expected = next((ip for ip in reversed(chain) if not trusted_by_model(ip, networks)), chain[0])
    assert forwarded_for(head, trusted) == str(expected)


# -- Trust ---------------------------------------------------------------------------------


def test_trust_parse() -> None:
    trust = Trust.parse("127.0.0.1,10.0.0.0/8, ::1, 2001:db8::/32")
    assert trust
    for ip in ["127.0.0.1", "10.255.0.1", "::1", "2001:db8:ffff::1", "::ffff:10.1.2.3", "::ffff:127.0.0.1"]:
        assert ip in trust, ip
    for ip in ["127.0.0.2", "11.0.0.1", "::2", "2001:db9::1", "::ffff:11.0.0.1", "", "nope", "10.0.0.1/8", " 10.0.0.1"]:
        assert ip not in trust, ip
    assert ipaddress.ip_address("10.1.1.1") in trust


def test_trust_nothing_and_everything() -> None:
    for text in ["", "  ", ",", " , "]:
        nothing = Trust.parse(text)
        assert not nothing
        assert "127.0.0.1" not in nothing
    everything = Trust.parse("*")
    assert everything
    assert "203.0.113.9" in everything and "2001:db8::1" in everything
    assert "garbage" not in everything


def test_trust_host_bits_are_ignored() -> None:
    assert "10.200.0.1" in Trust.parse("10.1.2.3/8")


@pytest.mark.parametrize(
    ("text", "entry"),
    [
        ("10.0.0.300", "'10.0.0.300'"),
        ("127.0.0.1, 10.0.0.0/33", "'10.0.0.0/33'"),
        ("localhost", "'localhost'"),
        ("fe80::1%eth0", "'fe80::1%eth0'"),
        ("10.0.0.0/8 ::1", "'10.0.0.0/8 ::1'"),
        ("**", "'**'"),
    ],
)
def test_trust_parse_errors(text: str, entry: str) -> None:
    with pytest.raises(ValueError, match="not an IP address or CIDR") as error:
        Trust.parse(text)
    assert str(error.value).endswith(entry)
    assert "\n" not in str(error.value)


@settings(max_examples=200)
@given(st.lists(networks, max_size=3), st.ip_addresses())
def test_trust_matches_ipaddress(nets: list, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    trust = Trust.parse(", ".join(map(str, nets)))
    assert bool(trust) == bool(nets)
    assert (str(ip) in trust) == trusted_by_model(ip, nets)
