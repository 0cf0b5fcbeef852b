"""Where the requests of a keep-alive connection begin (pure: the asyncio hand-back uses it)."""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from workers.request_bounds import HEAD_LIMIT, RequestBounds

GET = b"GET /socket.io/?EIO=4&transport=polling&sid=abc HTTP/1.1\r\nHost: x\r\n\r\n"
POST = (b"POST /socket.io/?EIO=4&transport=polling&sid=abc HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: text/plain\r\ncontent-length: 13\r\n\r\n42[\"whoami\"]\n")
UPGRADE = (b"GET /socket.io/?EIO=4&transport=websocket&sid=abc HTTP/1.1\r\nHost: x\r\n"
           b"Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
CHUNKED = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"


def starts(stream: bytes, cuts: list[int]) -> list[int]:
    """Feed ``stream`` cut at ``cuts``; return the offsets where a request begins."""
    bounds, found, offset = RequestBounds(), [], 0
    pieces = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)]) if a < b]
    for piece in pieces:
        while piece:
            if bounds.at_start:
                found.append(offset)
            used = bounds.feed(piece)
            assert 0 < used <= len(piece)
            offset += used
            piece = piece[used:]
    return found


def test_requests_of_a_connection_begin_after_each_head_and_body():
    stream = GET + POST + GET + POST
    expected = [0, len(GET), len(GET + POST), len(GET + POST + GET)]
    assert starts(stream, []) == expected


@given(st.lists(st.integers(min_value=1, max_value=2 * len(GET + POST)), max_size=12))
def test_how_the_bytes_are_cut_does_not_matter(cuts):
    stream = GET + POST + GET + POST
    expected = [0, len(GET), len(GET + POST), len(GET + POST + GET)]
    assert starts(stream, sorted(set(cuts))) == expected


def test_bare_newlines_end_a_head_too():
    head = b"GET / HTTP/1.0\nHost: x\n\n"
    assert starts(head + GET, []) == [0, len(head)]


def test_an_upgrade_a_chunked_body_or_connect_loses_the_connection():
    for first in (UPGRADE, CHUNKED, b"CONNECT x:443 HTTP/1.1\r\n\r\n",
                  b"POST / HTTP/1.1\r\nContent-Length: twelve\r\n\r\n"):
        bounds = RequestBounds()
        assert bounds.feed(first + GET) == len(first + GET)
        assert bounds.lost and not bounds.at_start
        assert bounds.feed(GET) == len(GET)  # everything is the server's from now on
        assert starts(first + GET, []) == [0]


def test_a_head_past_the_limit_loses_the_connection():
    bounds = RequestBounds()
    bounds.feed(b"GET / HTTP/1.1\r\nX-Long: ")
    for _ in range(HEAD_LIMIT // 4096):
        assert not bounds.lost
        bounds.feed(b"a" * 4096)
    assert bounds.lost
    assert bounds.feed(GET) == len(GET)
