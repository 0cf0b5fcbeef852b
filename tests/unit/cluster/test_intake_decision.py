"""What the intake does with a connection (cluster.intake.intake_decision), on recorded bytes.

No sockets, no clock: :func:`decide` gets the bytes a peek would return, a fake elapsed
time and the settings, and its answer is what the master does (wait, route by a sid or
by address, refuse, close).

Where the bytes come from (recorded on 2026-11-26 with a recording TCP proxy in front of
an eventlet python-socketio 5.18.1 server, client→server bytes of each connection):

* ``HANDSHAKE``, ``POLL_WITH_SID``: python-socketio 5.18.1's ``Client`` (requests 2.34.2)
  connecting with ``transports=["polling"]``: its first request, and the first request of
  the second connection it opened (a poll of the session).
* ``UPGRADE_WITH_SID``: the same client with the websocket transport (websocket-client
  1.9.2): its upgrade request, followed by its first websocket frame.
* ``BROWSER_GET``, ``FORWARDED_GET``, ``PROXY_V1_GET``: curl 7.88.1, with a Firefox
  user agent and cookies (``-A``, ``-b``), with ``-H "X-Forwarded-For: …"``, and with
  ``--haproxy-protocol``.
* ``TLS_HELLO``: Python 3's ``ssl`` client hello (SNI ``chat.example.com``), the first
  132 of its 517 bytes (a peek may return any prefix).
* ``PROXY_V2_GET``: no client at hand sends v2: built here byte by byte after the spec
  (haproxy's ``send-proxy-v2``: PROXY command, TCP over IPv4, no TLV).
"""
from __future__ import annotations

import dataclasses
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cluster.intake.intake_decision import (HEAD_LIMIT, REQUEST_LINE_LIMIT, Closed, IntakeRules,
                                            Refuse, Route, Seen, Wait, decide, decide_among_hosts)
from cluster.intake.peek import ProxyHeader
from cluster.protocol.trust import Trust

HANDSHAKE = (b"GET /socket.io/?transport=polling&EIO=4&t=1795702432.4421751 HTTP/1.1\r\n"
             b"Host: 127.0.0.1:47811\r\nUser-Agent: python-requests/2.34.2\r\n"
             b"Accept-Encoding: gzip, deflate\r\nAccept: */*\r\nConnection: keep-alive\r\n\r\n")
POLL_WITH_SID = (b"GET /socket.io/?transport=polling&EIO=4&sid=cou_am6qyiRn2PJDAAAA&t=1795702432.4563994"
                 b" HTTP/1.1\r\nHost: 127.0.0.1:47811\r\nUser-Agent: python-requests/2.34.2\r\n"
                 b"Accept-Encoding: gzip, deflate\r\nAccept: */*\r\nConnection: keep-alive\r\n\r\n")
UPGRADE_WITH_SID = (b"GET /socket.io/?transport=websocket&EIO=4&sid=h0uh01KHKNqkOXQNAAAA&t=1795702422.1650736"
                    b" HTTP/1.1\r\nUpgrade: websocket\r\nHost: 127.0.0.1:47811\r\n"
                    b"Origin: http://127.0.0.1:47811\r\nSec-WebSocket-Key: fiYY6OvcYxoGff935PJl2A==\r\n"
                    b"Sec-WebSocket-Version: 13\r\nConnection: Upgrade\r\n\r\n"
                    b"\x81\x86\x9cj\xab\xe9\xae\x1a\xd9\x86\xfe\x0f")
BROWSER_GET = (b"GET /socket.io/?EIO=4&transport=polling&t=PXk3aBc&sid=h0uh01KHKNqkOXQNAAAA HTTP/1.1\r\n"
               b"Host: 127.0.0.1:47811\r\n"
               b"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n"
               b"Accept: */*\r\nCookie: io=h0uh01KHKNqkOXQNAAAA; theme=dark\r\n"
               b"Accept-Language: en-US,en;q=0.5\r\n\r\n")
FORWARDED_GET = (b"GET /socket.io/?EIO=4&transport=polling&t=PXk3aBd HTTP/1.1\r\nHost: 127.0.0.1:47811\r\n"
                 b"User-Agent: curl/7.88.1\r\nAccept: */*\r\nX-Forwarded-For: 203.0.113.7, 10.0.0.2\r\n\r\n")
PROXY_V1 = b"PROXY TCP4 127.0.0.1 127.0.0.1 47398 47811\r\n"
PROXY_V1_GET = (PROXY_V1 + b"GET /socket.io/?EIO=4&transport=polling&t=PXk3aBe HTTP/1.1\r\n"
                b"Host: 127.0.0.1:47811\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n")
TLS_HELLO = (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\xca\x87\x1f\x9e\x99\xb9\x9f\xf3\xc7:\xaflE\xfd\xfc"
             b"\xe9\x9c@Ik\xa9N\xefRTTd\xc5\xc9(\x11\xd7 Pad\x10e\xf5i\xe6\xbef\xab\x8e\x08U\x0f\x8d\x0e\x86"
             b"\xbe/\xa9f\xdf\xbc\xec\xfc\xddki!\xfdO\x00$\x13\x02\x13\x03\x13\x01\xc0,\xc00\xc0+\xc0/\xcc\xa9"
             b"\xcc\xa8\xc0$\xc0(\xc0#\xc0'\x00\x9f\x00\x9e\x00k\x00g\x00\xff\x01\x00\x01\x8f\x00\x00\x00\x15"
             b"\x00\x13\x00\x00\x10chat.")
PROXY_V2 = (b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11]) + struct.pack("!H", 12)
            + bytes([198, 51, 100, 9]) + bytes([10, 0, 0, 5]) + struct.pack("!HH", 61000, 443))
PROXY_V2_GET = PROXY_V2 + POLL_WITH_SID
PROXY_V2_LOCAL = b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x20, 0x00]) + struct.pack("!H", 0)
GARBAGE = b"\x00\xff\x13garbage\x7f"

PEER = ("192.0.2.10", 51234)
"""A client connected straight to the master: trusted by no test."""
BALANCER = ("10.0.0.2", 40000)
"""A load balancer in front of the master, trusted where a test says so."""
SID_1 = "cou_am6qyiRn2PJDAAAA"
SID_2 = "h0uh01KHKNqkOXQNAAAA"


def rules(route: str = "sid", proxy_protocol: bool = False, trusted: str = "",
          peek_timeout: float = 5.0) -> IntakeRules:
    return IntakeRules(route == "sid", proxy_protocol, Trust.parse(trusted), peek_timeout)


def seen(client: tuple[str, int] | None = PEER, elapsed: float = 0.0, **facts: object) -> Seen:
    return Seen(client, elapsed, **facts)  # type: ignore[arg-type]


def first_line(head: bytes) -> bytes:
    return head[: head.index(b"\n") + 1]


# -- the recorded clients, routed by sid ---------------------------------------------------


@pytest.mark.parametrize(("head", "sid"), [
    (HANDSHAKE, None),
    (POLL_WITH_SID, SID_1),
    (UPGRADE_WITH_SID, SID_2),
    (BROWSER_GET, SID_2),
])
def test_a_whole_request_line_routes_by_its_sid(head: bytes, sid: str | None) -> None:
    assert decide(head, seen(), rules()) == Route(PEER, sid)
    assert decide(first_line(head), seen(), rules()) == Route(PEER, sid)


def test_a_session_cookie_does_not_route_only_the_query_does() -> None:
    without_query_sid = BROWSER_GET.replace(b"&sid=h0uh01KHKNqkOXQNAAAA", b"")
    assert decide(without_query_sid, seen(), rules()) == Route(PEER, None)


def test_with_route_ip_nothing_is_read_of_the_request() -> None:
    for head in (HANDSHAKE, POLL_WITH_SID, UPGRADE_WITH_SID, HANDSHAKE[:10], None):
        assert decide(head, seen(), rules(route="ip")) == Route(PEER, None)
    assert not rules(route="ip").peeking
    assert rules().peeking and rules(route="ip", proxy_protocol=True).peeking
    assert rules(route="ip", trusted="10.0.0.0/8").peeking


def test_a_request_line_split_across_two_reads_waits_then_routes() -> None:
    line = first_line(POLL_WITH_SID)
    part = line[:37]  # cut inside the sid
    assert decide(part, seen(), rules()) == Wait(len(part) + 1)
    assert decide(line, seen(awaited=len(part) + 1), rules()) == Route(PEER, SID_1)


def test_nothing_yet_waits_for_a_first_byte_until_the_peek_timeout() -> None:
    assert decide(None, seen(elapsed=4.99), rules()) == Wait(1)
    assert decide(None, seen(elapsed=5.0), rules()) == Route(PEER, None)
    assert decide(None, seen(elapsed=0.5), rules(peek_timeout=0.5)) == Route(PEER, None)


def test_a_partial_request_line_is_routed_with_what_it_has_at_the_peek_timeout() -> None:
    part = first_line(POLL_WITH_SID)[:80]  # the sid is whole (an & follows it), the line is not
    assert decide(part, seen(elapsed=1.0), rules()) == Wait(len(part) + 1)
    assert decide(part, seen(elapsed=5.0), rules()) == Route(PEER, SID_1)
    cut = first_line(POLL_WITH_SID)[:50]  # inside the sid: it may be longer, it names no one
    assert decide(cut, seen(elapsed=5.0), rules()) == Route(PEER, None)


def test_a_request_line_over_the_limit_is_routed_without_waiting() -> None:
    head = b"GET /socket.io/?EIO=4&transport=polling&pad=" + b"x" * REQUEST_LINE_LIMIT
    assert decide(head[:REQUEST_LINE_LIMIT - 1], seen(), rules()) == Wait(REQUEST_LINE_LIMIT)
    assert decide(head[:REQUEST_LINE_LIMIT], seen(), rules()) == Route(PEER, None)


@pytest.mark.parametrize("head", [TLS_HELLO, TLS_HELLO[:1], GARBAGE, b"get / HTTP/1.1"])
def test_what_cannot_be_a_request_line_is_routed_at_once(head: bytes) -> None:
    assert decide(head, seen(), rules()) == Route(PEER, None)
    assert decide(head, seen(), rules(trusted="*")) == Route(PEER, None)


@pytest.mark.parametrize("flags", [{}, {"route": "ip"}, {"proxy_protocol": True}, {"trusted": "*"}])
def test_a_connection_closed_before_routing_is_closed(flags: dict) -> None:
    assert decide(b"", seen(), rules(**flags)) == Closed()
    assert decide(b"", seen(elapsed=99, proxied=False), rules(**flags)) == Closed()


# -- a peer that cannot send more ------------------------------------------------------------


def test_woken_without_a_new_byte_the_peer_shut_its_side_route_now() -> None:
    part = HANDSHAKE[:20]
    assert decide(part, seen(awaited=len(part) + 1), rules()) == Route(PEER, None)
    assert decide(part + b"/", seen(awaited=len(part) + 1), rules()) == Wait(len(part) + 2)


def test_with_the_pending_set_full_a_connection_is_decided_at_once() -> None:
    assert decide(None, seen(crowded=True), rules()) == Route(PEER, None)
    assert decide(HANDSHAKE[:20], seen(crowded=True), rules()) == Route(PEER, None)
    assert decide(None, seen(crowded=True, proxied=False), rules(proxy_protocol=True)) == \
        Refuse("sent no PROXY header")


def test_on_a_unix_socket_a_partial_head_is_not_waited_for() -> None:
    # its poll ignores SO_RCVLOWAT: waiting for more would wake the loop again and again
    assert decide(HANDSHAKE[:20], seen(None, can_wait_for_more=False), rules()) == Route(None, None)
    assert decide(None, seen(None, can_wait_for_more=False), rules()) == Wait(1)
    assert decide(PROXY_V1[:20], seen(None, proxied=False, can_wait_for_more=False),
                  rules(proxy_protocol=True)) == Refuse("truncated PROXY header")


# -- PROXY protocol --------------------------------------------------------------------------


def test_proxy_v1_from_curl_gives_the_client_and_is_consumed() -> None:
    header = ProxyHeader(len(PROXY_V1), ("127.0.0.1", 47398))
    assert decide(PROXY_V1_GET, seen(BALANCER, proxied=False), rules(proxy_protocol=True)) == \
        Route(("127.0.0.1", 47398), None, header)


def test_proxy_v2_gives_the_client_and_the_sid_after_it() -> None:
    header = ProxyHeader(len(PROXY_V2), ("198.51.100.9", 61000))
    decision = decide(PROXY_V2_GET, seen(BALANCER, proxied=False), rules(proxy_protocol=True))
    assert decision == Route(("198.51.100.9", 61000), SID_1, header)
    assert decide(PROXY_V2_GET, seen(BALANCER, proxied=False), rules(route="ip", proxy_protocol=True)) == \
        Route(("198.51.100.9", 61000), None, header)


def test_proxy_v2_local_keeps_the_peer_address() -> None:
    decision = decide(PROXY_V2_LOCAL + HANDSHAKE, seen(BALANCER, proxied=False), rules(proxy_protocol=True))
    assert decision == Route(BALANCER, None, ProxyHeader(len(PROXY_V2_LOCAL), None))


def test_a_whole_proxy_header_then_a_partial_request_is_consumed_and_waits() -> None:
    head = PROXY_V2 + POLL_WITH_SID[:30]
    header = ProxyHeader(len(PROXY_V2), ("198.51.100.9", 61000))
    assert decide(head, seen(BALANCER, proxied=False), rules(proxy_protocol=True)) == Wait(31, header)
    assert decide(PROXY_V2, seen(BALANCER, proxied=False), rules(proxy_protocol=True)) == Wait(1, header)
    # with --route ip the address is all that counts: routed as soon as the header is read
    assert decide(head, seen(BALANCER, proxied=False), rules(route="ip", proxy_protocol=True)) == \
        Route(("198.51.100.9", 61000), None, header)


@pytest.mark.parametrize(("head", "reason"), [
    (HANDSHAKE, "no PROXY protocol signature"),
    (TLS_HELLO, "no PROXY protocol signature"),
    (GARBAGE, "no PROXY protocol signature"),
    (b"PROXY TCP4 127.0.0.1 127.0.0.1 47398 47811\n", "v1 line not ended by CRLF"),
    (b"PROXY TCP5 ", "bad v1 protocol"),
])
def test_with_proxy_protocol_a_missing_or_bad_header_is_refused(head: bytes, reason: str) -> None:
    assert decide(head, seen(BALANCER, proxied=False), rules(proxy_protocol=True)) == Refuse(reason)


def test_a_proxy_header_cut_short_waits_then_is_refused_at_the_peek_timeout() -> None:
    for part in (PROXY_V1[:20], PROXY_V2[:10], PROXY_V2[:20]):
        assert decide(part, seen(BALANCER, proxied=False), rules(proxy_protocol=True)) == Wait(len(part) + 1)
        assert decide(part, seen(BALANCER, elapsed=5.0, proxied=False), rules(proxy_protocol=True)) == \
            Refuse("truncated PROXY header")
    assert decide(None, seen(BALANCER, proxied=False), rules(proxy_protocol=True)) == Wait(1)
    assert decide(None, seen(BALANCER, elapsed=5.0, proxied=False), rules(proxy_protocol=True)) == \
        Refuse("sent no PROXY header")


def test_a_proxy_v2_header_larger_than_the_peek_is_refused() -> None:
    huge = b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11]) + struct.pack("!H", HEAD_LIMIT)
    head = (huge + bytes(HEAD_LIMIT))[:HEAD_LIMIT]
    assert decide(head, seen(BALANCER, proxied=False), rules(proxy_protocol=True)) == \
        Refuse("truncated PROXY header")


def test_without_proxy_protocol_a_proxy_header_is_just_a_request_that_names_no_sid() -> None:
    assert decide(PROXY_V1_GET, seen(BALANCER), rules()) == Route(BALANCER, None)


# -- X-Forwarded-For ---------------------------------------------------------------------------


@pytest.mark.parametrize("trusted", ["10.0.0.0/8", "10.0.0.2", "10.0.0.0/8, 127.0.0.1", "*"])
def test_a_trusted_peer_gives_the_client_of_its_x_forwarded_for(trusted: str) -> None:
    # the entries are read from the right: 10.0.0.2 (the balancer) is trusted, the next is not
    assert decide(FORWARDED_GET, seen(BALANCER), rules(trusted=trusted)) == \
        Route(("203.0.113.7", BALANCER[1]), None)


def test_the_first_untrusted_entry_from_the_right_is_the_client() -> None:
    other = ("10.9.9.9", 40000)  # trusted itself, but not the 10.0.0.2 it forwards for
    assert decide(FORWARDED_GET, seen(other), rules(trusted="10.9.9.9")) == Route(("10.0.0.2", 40000), None)


def test_an_untrusted_peer_keeps_its_own_address() -> None:
    assert decide(FORWARDED_GET, seen(PEER), rules(trusted="10.0.0.0/8")) == Route(PEER, None)
    assert decide(FORWARDED_GET, seen(PEER), rules()) == Route(PEER, None)


def test_a_trusted_peer_waits_for_its_whole_head() -> None:
    line = first_line(FORWARDED_GET)
    for part in (line, FORWARDED_GET[:-2], FORWARDED_GET[:-1]):
        assert decide(part, seen(BALANCER), rules(trusted="10.0.0.0/8")) == Wait(len(part) + 1)
        # an untrusted peer is routed on its request line
        assert decide(part, seen(PEER), rules(trusted="10.0.0.0/8")) == Route(PEER, None)
    # at the peek timeout: routed with the headers it has (the X-Forwarded-For line is whole)
    assert decide(FORWARDED_GET[:-2], seen(BALANCER, elapsed=5.0), rules(trusted="10.0.0.0/8")) == \
        Route(("203.0.113.7", BALANCER[1]), None)


def test_with_route_ip_a_trusted_peer_still_waits_for_its_x_forwarded_for() -> None:
    trusting = rules(route="ip", trusted="10.0.0.0/8")
    assert decide(None, seen(BALANCER), trusting) == Wait(1)
    assert decide(None, seen(PEER), trusting) == Route(PEER, None)
    assert decide(FORWARDED_GET, seen(BALANCER), trusting) == Route(("203.0.113.7", BALANCER[1]), None)


def test_headers_over_the_peek_limit_are_routed_without_their_end() -> None:
    head = (first_line(FORWARDED_GET) + b"X-Forwarded-For: 203.0.113.7\r\n"
            + b"X-Pad: " + b"x" * HEAD_LIMIT)[:HEAD_LIMIT]
    assert decide(head, seen(BALANCER), rules(trusted="10.0.0.0/8")) == \
        Route(("203.0.113.7", BALANCER[1]), None)


def test_a_unix_socket_peer_is_local_and_trusted() -> None:
    assert decide(FORWARDED_GET, seen(None), rules(trusted="10.0.0.0/8")) == Route(("203.0.113.7", 0), None)


def test_proxy_protocol_and_x_forwarded_for_together() -> None:
    # the PROXY header names the balancer's own client, a trusted proxy: its X-Forwarded-For counts
    header = PROXY_V1.replace(b"TCP4 127.0.0.1", b"TCP4 10.1.2.3")
    head = header + FORWARDED_GET
    decision = decide(head, seen(BALANCER, proxied=False), rules(proxy_protocol=True, trusted="10.0.0.0/8"))
    assert decision == Route(("203.0.113.7", 47398), None, ProxyHeader(len(header), ("10.1.2.3", 47398)))
    # … and one that names an untrusted client is that client
    decision = decide(PROXY_V1_GET.replace(b"\r\n\r\n", b"\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n"),
                      seen(BALANCER, proxied=False), rules(proxy_protocol=True, trusted="10.0.0.0/8"))
    assert isinstance(decision, Route) and decision.client == ("127.0.0.1", 47398)


# -- every combination of the flags ------------------------------------------------------------

FORWARDED_POLL = POLL_WITH_SID.replace(b"\r\n\r\n", b"\r\nX-Forwarded-For: 203.0.113.7\r\n\r\n")
V2_CLIENT = ("198.51.100.9", 61000)
V2_HEADER = ProxyHeader(len(PROXY_V2), V2_CLIENT)


@pytest.mark.parametrize("route", ["sid", "ip"])
@pytest.mark.parametrize("proxy_protocol", [False, True])
@pytest.mark.parametrize("trusted", ["", "10.0.0.0/8, 198.51.100.9"])
def test_each_flag_changes_what_a_balancer_s_connection_gives(route: str, proxy_protocol: bool,
                                                               trusted: str) -> None:
    """A balancer (10.0.0.2) relays a poll of session SID_1 for 203.0.113.7, with a PROXY v2
    header (source 198.51.100.9) when the master expects one."""
    flags = rules(route, proxy_protocol, trusted)
    header, before = (PROXY_V2, V2_HEADER) if proxy_protocol else (b"", None)
    port = V2_CLIENT[1] if proxy_protocol else BALANCER[1]
    client = ("203.0.113.7", port) if trusted else (V2_CLIENT if proxy_protocol else BALANCER)
    sid = SID_1 if route == "sid" else None
    conn = seen(BALANCER, proxied=not proxy_protocol)
    assert decide(header + FORWARDED_POLL, conn, flags) == Route(client, sid, before)
    part = FORWARDED_POLL[:30]
    reads_request = route == "sid" or bool(trusted)
    expected = Wait(31, before) if reads_request else Route(client, None, before)
    assert decide(header + part, conn, flags) == expected
    assert decide(header + part, seen(BALANCER, elapsed=5.0, proxied=not proxy_protocol), flags) == \
        Route(V2_CLIENT if proxy_protocol else BALANCER, None, before)


# -- properties ----------------------------------------------------------------------------------

RECORDED = [HANDSHAKE, POLL_WITH_SID, UPGRADE_WITH_SID, BROWSER_GET, FORWARDED_GET]
FLAGS = st.fixed_dictionaries({
    "route": st.sampled_from(["sid", "ip"]),
    "proxy_protocol": st.booleans(),
    "trusted": st.sampled_from(["", "10.0.0.0/8", "*"]),
})


def until_routed(stream: bytes, reads: list[int], peer: tuple[str, int], flags: IntakeRules) -> object:
    """Decide on ``stream`` as it arrives, ``reads[i]`` bytes at a time, the way the intake
    does: a consumed PROXY header leaves the stream, a wait lasts until more bytes come."""
    conn = Seen(peer, 0.0, proxied=not flags.proxy_protocol)
    arrived = 0
    for size in reads + [len(stream)]:
        arrived = min(len(stream), arrived + size)
        decision = decide(stream[:arrived] or None, conn, flags)
        if isinstance(decision, (Wait, Route)) and decision.proxy is not None:
            stream, arrived = stream[decision.proxy.length:], arrived - decision.proxy.length
            conn = dataclasses.replace(conn, client=decision.proxy.client or conn.client, proxied=True)
            decision = dataclasses.replace(decision, proxy=None)
        if not isinstance(decision, Wait):
            return decision
        assert decision.lowat > arrived, "waits for bytes it already has"
        conn = dataclasses.replace(conn, awaited=decision.lowat)
    raise AssertionError("still waiting once everything arrived")


@settings(max_examples=300)
@given(st.sampled_from(RECORDED), st.sampled_from([PROXY_V1, PROXY_V2, PROXY_V2_LOCAL]),
       st.lists(st.integers(1, 400), max_size=4), FLAGS)
def test_any_split_of_a_recorded_request_is_decided_as_the_whole(recorded: bytes, header: bytes,
                                                                 reads: list[int], flags: dict) -> None:
    rule = rules(**flags)
    stream = (header if rule.proxy_protocol else b"") + recorded
    whole = until_routed(stream, [], BALANCER, rule)
    assert isinstance(whole, Route)
    assert until_routed(stream, reads, BALANCER, rule) == whole


@given(st.one_of(st.none(), st.binary(max_size=300),
                 st.sampled_from(RECORDED + [PROXY_V1_GET, PROXY_V2_GET, TLS_HELLO]).flatmap(
                     lambda head: st.integers(0, len(head)).map(lambda cut: head[:cut]))),
       FLAGS, st.booleans(), st.booleans(), st.sampled_from([None, PEER, BALANCER]))
def test_never_raises_never_waits_for_what_it_has_nor_past_the_timeout(
        head: bytes | None, flags: dict, proxied: bool, unix: bool, client: tuple | None) -> None:
    rule = rules(**flags)
    conn = Seen(client, 0.0, proxied=proxied or not rule.proxy_protocol, can_wait_for_more=not unix)
    decision = decide(head, conn, rule)
    if isinstance(decision, Wait):  # its lowat counts the bytes after a PROXY header it consumes
        consumed = decision.proxy.length if decision.proxy else 0
        assert decision.lowat > len(head or b"") - consumed
    late = decide(head, dataclasses.replace(conn, elapsed=rule.peek_timeout), rule)
    assert not isinstance(late, Wait)
    assert decide(head, dataclasses.replace(conn, crowded=True), rule) == late


# -- several hosts: a peer's PROXY v2 header -------------------------------------------------

OTHER_MASTER = ("127.0.0.12", 40100)
"""Another master's forwarder, connecting from its advertised IP."""


def hosts_rules(*peers: str, **given: object) -> IntakeRules:
    return dataclasses.replace(rules(**given), peers=frozenset(peers))  # type: ignore[arg-type]


def test_a_peers_proxy_v2_header_is_consumed_and_names_the_client() -> None:
    header = ProxyHeader(len(PROXY_V2), ("198.51.100.9", 61000))
    assert decide_among_hosts(PROXY_V2_GET, seen(OTHER_MASTER), hosts_rules("127.0.0.12")) == Route(
        ("198.51.100.9", 61000), SID_1, header)
    assert decide_among_hosts(PROXY_V2_LOCAL + POLL_WITH_SID, seen(OTHER_MASTER),
                  hosts_rules("127.0.0.12")) == Route(
        OTHER_MASTER, SID_1, ProxyHeader(len(PROXY_V2_LOCAL), None))


def test_a_peers_header_alone_is_consumed_and_its_request_awaited() -> None:
    header = ProxyHeader(len(PROXY_V2), ("198.51.100.9", 61000))
    assert decide_among_hosts(PROXY_V2, seen(OTHER_MASTER), hosts_rules("127.0.0.12")) == Wait(1, header)


def test_a_peers_header_cut_short_waits_for_the_rest_then_is_refused_at_the_timeout() -> None:
    for cut in (2, 12, 20):
        part = PROXY_V2_GET[:cut]
        assert decide_among_hosts(part, seen(OTHER_MASTER), hosts_rules("127.0.0.12")) == Wait(cut + 1)
        assert decide_among_hosts(part, seen(OTHER_MASTER, elapsed=5.0),
                      hosts_rules("127.0.0.12")) == Refuse("truncated PROXY header")


def test_plain_http_from_a_peers_ip_is_routed_as_ever() -> None:
    assert decide_among_hosts(POLL_WITH_SID, seen(OTHER_MASTER), hosts_rules("127.0.0.12")) == Route(
        OTHER_MASTER, SID_1)


def test_a_proxy_v2_header_from_anyone_but_a_peer_is_refused() -> None:
    refused = decide_among_hosts(PROXY_V2_GET, seen(PEER), hosts_rules("127.0.0.12"))
    assert isinstance(refused, Refuse) and "not a peer" in refused.reason
    assert isinstance(decide_among_hosts(PROXY_V2_GET, seen(None), hosts_rules("127.0.0.12")), Refuse)
    assert isinstance(decide_among_hosts(PROXY_V2_GET, seen(OTHER_MASTER), hosts_rules()), Refuse)


def test_a_bad_proxy_v2_header_from_a_peer_is_refused() -> None:
    bad = PROXY_V2[:12] + bytes([0x21, 0x99]) + PROXY_V2[14:] + POLL_WITH_SID
    assert isinstance(decide_among_hosts(bad, seen(OTHER_MASTER), hosts_rules("127.0.0.12")), Refuse)


def test_what_starts_like_a_signature_from_a_client_is_decided_as_ever_when_it_is_not_one() -> None:
    assert decide_among_hosts(b"\r\nGET", seen(PEER, elapsed=5.0), hosts_rules("127.0.0.12")) == Route(PEER, None)
    assert decide_among_hosts(b"\r\n", seen(PEER), hosts_rules("127.0.0.12")) == Wait(3)
    assert decide_among_hosts(b"\r\nGET / HTTP/1.1\r\n", seen(PEER), hosts_rules()) == Route(PEER, None)


def test_with_one_host_a_proxy_v2_header_is_not_looked_for() -> None:
    assert rules().peers is None
    assert decide(PROXY_V2_GET, seen(OTHER_MASTER), rules()) == Route(OTHER_MASTER, None)
    assert rules().peek_size == REQUEST_LINE_LIMIT and hosts_rules().peek_size == HEAD_LIMIT


def test_with_proxy_protocol_a_peers_header_is_the_one_every_connection_has() -> None:
    header = ProxyHeader(len(PROXY_V2), ("198.51.100.9", 61000))
    assert decide_among_hosts(PROXY_V2_GET, seen(OTHER_MASTER, proxied=False),
                  hosts_rules("127.0.0.12", proxy_protocol=True)) == Route(
        ("198.51.100.9", 61000), SID_1, header)


def test_among_hosts_anything_without_a_proxy_v2_start_is_decided_as_ever() -> None:
    for head in (HANDSHAKE, POLL_WITH_SID, UPGRADE_WITH_SID, PROXY_V1_GET, TLS_HELLO, GARBAGE,
                 POLL_WITH_SID[:20], None, b""):
        for facts in ({}, {"elapsed": 5.0}):
            assert decide_among_hosts(head, seen(OTHER_MASTER, **facts), hosts_rules("127.0.0.12")) \
                == decide(head, seen(OTHER_MASTER, **facts), hosts_rules("127.0.0.12"))
