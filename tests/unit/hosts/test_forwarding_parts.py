"""The forwarder's pure parts: where a request goes (cluster.hosts.routing), the PROXY v2
header it writes (read back by the master's own parser), the answers it gives itself, and
the HOSTS message."""
from __future__ import annotations

import ipaddress
import json

import pytest
from engineio.base_server import BaseServer
from hypothesis import example, given, settings, strategies as st

from cluster.hosts import proxy_v2, responses
from cluster.hosts.counts import Counts, hosts_message
from cluster.hosts.forwarder_config import ForwarderConfig
from cluster.hosts.forwarding import Forwarding
from cluster.hosts.routing import Route, decide, target_sid
from cluster.intake.peek import ProxyHeader, parse_proxy
from cluster.protocol.sids import make_sid, request_sid, sid_prefix

ME, HOST_2 = ("127.0.0.11", 8000), ("127.0.0.12", 8000)
HOSTS = {1: ME, 2: HOST_2, 3: ME}
RANDOM_PART = "Zml4ZWQtcmFuZG9tLXBh"  # fixed, not random: parametrized tests are named by these sids
SID_2, SID_1, SID_0, SID_9 = (sid_prefix(5, host) + RANDOM_PART for host in (2, 1, 0, 9))


def route(target: str, hop: bool = False):
    return decide(target.encode(), hop, 1, ME, HOSTS)


def test_a_sid_of_a_peer_is_forwarded_to_its_address():
    decision = route(f"/socket.io/?EIO=4&transport=polling&sid={SID_2}")
    assert (decision.route, decision.sid, decision.host, decision.address) == (
        Route.FORWARD, SID_2, 2, HOST_2)


def test_the_forwarders_kept_decisions_follow_a_new_directory():
    directory = {"now": dict(HOSTS)}
    forwarding = Forwarding(ForwarderConfig(host_id=1, advertise=ME, channel="c"),
                            lambda: directory["now"], lambda *_args: None)
    target = f"/socket.io/?sid={SID_2}".encode()
    assert forwarding.decide(target, False).route is Route.FORWARD
    assert forwarding.decide(target, True).route is Route.LOOP
    directory["now"] = {1: ME}
    assert forwarding.decide(target, False).route is Route.UNKNOWN_HOST


@pytest.mark.parametrize("target", ["/socket.io/?EIO=4&transport=polling", "/",
                                    f"/socket.io/?sid={SID_1}", f"/socket.io/?sid={SID_0}",
                                    "/socket.io/?sid=short", "/?sid=" + "x" * 24])
def test_no_sid_ours_a_lone_hosts_or_not_one_of_ours_is_handed_back(target):
    assert route(target).route is Route.HAND_BACK


def test_a_host_not_in_the_directory_is_unknown():
    decision = route(f"/socket.io/?sid={SID_9}")
    assert (decision.route, decision.sid, decision.host) == (Route.UNKNOWN_HOST, SID_9, 9)


def test_a_request_forwarded_once_already_or_to_ourselves_is_a_loop():
    assert route(f"/?sid={SID_2}", hop=True).route is Route.LOOP
    assert route(f"/?sid={SID_9}", hop=True).route is Route.LOOP
    assert route(f"/?sid={make_sid(sid_prefix(1, 3))}").route is Route.LOOP


@pytest.mark.parametrize("source, destination, client", [
    (("203.0.113.7", 51000), ("127.0.0.12", 8000), ("203.0.113.7", 51000)),
    (("2001:db8::7", 1), ("::1", 8000), ("2001:db8::7", 1)),
    (("203.0.113.7", 2), ("::1", 8000), (str(ipaddress.ip_address("::ffff:203.0.113.7")), 2)),
    (None, ("127.0.0.12", 8000), None), (("", 0), ("127.0.0.12", 8000), None),
    (("/run/app.sock", 0), ("127.0.0.12", 8000), None)])
def test_the_proxy_header_reads_back_with_the_masters_parser(source, destination, client):
    header = proxy_v2.header(source, destination)
    assert header.startswith(proxy_v2.SIGNATURE)
    assert parse_proxy(header + b"GET / HTTP/1.1\r\n") == ProxyHeader(len(header), client)


@given(st.ip_addresses(), st.integers(0, 65535), st.ip_addresses(), st.integers(0, 65535))
def test_any_addresses_make_a_header_the_master_reads(source, port, destination, to_port):
    header = proxy_v2.header((str(source), port), (str(destination), to_port))
    parsed = parse_proxy(header)
    assert parsed.length == len(header) and parsed.client is not None
    assert parsed.client[1] == port


def test_an_unknown_session_is_answered_as_python_engineio_answers_it():
    response, body = responses.unknown_session(SID_9)
    theirs = BaseServer._bad_request(None, f"Invalid session {SID_9}")
    assert f"{response.status_code} {response.reason.decode()}" == theirs["status"]
    assert body == theirs["response"]
    assert (b"content-type", b"text/plain") in list(response.headers)


def test_the_hosts_message_names_hosts_counts_and_refusals():
    counts = Counts()
    counts.peer(2).requests += 3
    counts.refused.loop += 1
    facts = json.loads(hosts_message({2: HOST_2, 4: ("::1", 80)}, counts))
    assert facts == {"hosts": {"2": "127.0.0.12:8000", "4": "[::1]:80"},
                     "peers": {"2": {"requests": 3, "upgrades": 0, "bytes_in": 0,
                                     "bytes_out": 0, "errors": 0, "forward_seconds": 0.0,
                                     "forwards": 0}},
                     "refused": {"unknown_host": 0, "loop": 1, "unanswered": 0},
                     "own": {"requests": 0, "upgrades": 0, "bytes_in": 0, "bytes_out": 0,
                             "errors": 0, "forward_seconds": 0.0, "forwards": 0}}


_PIECES = st.sampled_from([b"sid=", b"xsid=", b"&", b"?", b"#", b"=", b"/", b"a", b"_-",
                           SID_2.encode(), b"%20", b"\xc3\xa9"])


@example(b"??sid=a")  # a second "?" is part of the first parameter's value, not a start
@settings(max_examples=500)
@given(st.lists(_PIECES, max_size=8).map(b"".join))
def test_the_sid_is_read_from_a_target_as_from_its_request_line(target):
    assert target_sid(b"/socket.io/" + target) == request_sid(
        b"GET /socket.io/" + target + b" HTTP/1.1\r\n")


@pytest.mark.parametrize("target, sid", [
    (f"/socket.io/?EIO=4&transport=polling&sid={SID_2}&t=PQx1", SID_2),
    (f"/socket.io/?xsid=1&sid={SID_2}", SID_2), (f"/?t=1#&sid={SID_2}", None),
    (f"/#?sid={SID_2}", None), (f"/?sid={SID_2}#x", SID_2), ("/?sid=&sid=abc", None),
    ("/?sid=" + "x" * 65, None), ("/sid=abc", None)])
def test_the_sid_of_a_target(target, sid):
    assert target_sid(target.encode()) == sid
