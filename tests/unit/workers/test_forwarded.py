"""What the workers take of X-Forwarded-Proto / X-Forwarded-Host (workers/forwarded.py), and
the cached trust check of the master's accept path (cluster.protocol.trust.TrustCache): no process."""
from __future__ import annotations

import socket

import pytest

from cluster.protocol.trust import Trust, TrustCache
from workers import forwarded


@pytest.mark.parametrize(("value", "expected"), [
    ("https", True), ("HTTPS", True), ("wss", True), ("http", False), ("ws", False),
    ("http, https", True), ("https,http", False), (" https ", True),
    ("gopher", None), ("", None), (None, None), (",", None),
])
def test_the_last_entry_of_x_forwarded_proto_is_the_scheme(value, expected):
    assert forwarded.secure(value) is expected


@pytest.mark.parametrize(("value", "expected"), [
    ("chat.example.com", "chat.example.com"), ("chat.example.com:8443", "chat.example.com:8443"),
    ("[::1]:443", "[::1]:443"), ("a.com, b.com", "b.com"), ("bad host", None),
    ("evil\r\nx", None), ("a.com/path", None), ("-a.com", None), (None, None),
])
def test_x_forwarded_host_must_be_a_host(value, expected):
    assert forwarded.host(value) == expected


def test_environ_and_scope_take_the_forwarded_scheme_and_host():
    environ = {"wsgi.url_scheme": "http", "HTTP_HOST": "127.0.0.1:5000",
               "HTTP_X_FORWARDED_PROTO": "https", "HTTP_X_FORWARDED_HOST": "chat.example.com"}
    forwarded.apply_to_environ(environ)
    assert (environ["wsgi.url_scheme"], environ["HTTP_HOST"]) == ("https", "chat.example.com")
    scope = {"type": "websocket", "scheme": "ws",
             "headers": [(b"host", b"127.0.0.1:5000"), (b"x-forwarded-proto", b"https")]}
    changed = forwarded.apply_to_scope(scope)
    assert changed["scheme"] == "wss" and scope["scheme"] == "ws"  # a copy
    http = {"type": "http", "scheme": "http", "headers": [(b"host", b"h"), (b"x-forwarded-host", b"a.b")]}
    assert forwarded.apply_to_scope(http)["headers"] == [(b"host", b"a.b")][:0] + [
        (b"x-forwarded-host", b"a.b"), (b"host", b"a.b")]
    plain = {"type": "http", "scheme": "http", "headers": [(b"host", b"h")]}
    assert forwarded.apply_to_scope(plain) is plain


def test_the_peer_of_the_socket_decides_and_a_unix_peer_is_local():
    trusted = forwarded.trust_of("127.0.0.1")
    assert forwarded.trust_of("") is None
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        for source, expected in (("127.0.0.1", True), ("127.0.0.9", False)):
            with socket.create_connection(server.getsockname(), source_address=(source, 0)):
                accepted, _ = server.accept()
                with accepted:
                    assert forwarded.from_trusted_proxy(accepted, trusted) is expected
    left, right = socket.socketpair()
    with left, right:
        assert forwarded.from_trusted_proxy(left, trusted) is True


def test_the_cached_trust_answers_as_the_trust_and_stays_bounded():
    trust = Trust.parse("127.0.0.0/8,::1")
    cache = TrustCache(trust, limit=3)
    for ip in ("127.0.0.1", "10.0.0.1", "::1", "127.9.9.9", "::ffff:127.0.0.1", "x", "10.0.0.1"):
        assert cache(ip) is (ip in trust)
        assert cache(ip) is (ip in trust)
    assert len(cache._answers) <= 3  # noqa: SLF001
    assert Trust.parse("*").everything and not trust.everything
