"""Where the requests of a keep-alive connection begin (pure: the asyncio hand-back and
limits use it)."""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from workers.asyncio.request_bounds import HEAD_LIMIT, Head, RequestBounds

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


def test_a_chunked_body_is_followed_to_its_last_chunk_and_trailer():
    trailer = b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n" \
              b"3;ext=1\r\nabc\r\n0\r\nX-Sum: 1\r\n\r\n"
    stream = CHUNKED + GET + trailer + POST
    expected = [0, len(CHUNKED), len(CHUNKED + GET), len(CHUNKED + GET + trailer)]
    assert starts(stream, []) == expected
    assert starts(stream, list(range(1, len(stream)))) == expected  # a byte at a time


def test_connect_or_an_unreadable_length_loses_the_connection():
    for first in (b"CONNECT x:443 HTTP/1.1\r\n\r\n",
                  b"POST / HTTP/1.1\r\nContent-Length: twelve\r\n\r\n",
                  b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
                  b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"):
        bounds = RequestBounds()
        stream = first + GET
        while stream and not bounds.lost:
            stream = stream[bounds.feed(stream):]
        assert bounds.lost and not bounds.at_start and not bounds.upgrading, first
        assert bounds.feed(GET) == len(GET)  # everything is the server's from now on
        assert starts(first + GET, []) == [0]


def test_an_upgrade_loses_the_connection_until_it_is_refused():
    bounds = RequestBounds()
    assert bounds.feed(UPGRADE + GET) == len(UPGRADE)
    assert bounds.head is not None and bounds.head.fields["upgrade"] == "websocket"
    assert bounds.lost and bounds.upgrading and not bounds.at_start
    assert bounds.feed(b"\x81\x85frame") == 7  # a websocket, if the server took it
    bounds.resume()  # it did not: requests follow
    assert bounds.at_start and not bounds.lost
    assert bounds.feed(GET) == len(GET) and bounds.at_start


def test_the_head_is_given_when_it_is_whole():
    bounds = RequestBounds()
    assert bounds.feed(POST[:20]) == 20 and bounds.head is None
    used = bounds.feed(POST[20:])
    head = bounds.head
    assert head == Head("POST", "/socket.io/?EIO=4&transport=polling&sid=abc",
                        {"host": "x", "content-type": "text/plain", "content-length": "13"})
    assert bounds.in_body and POST[20 + used:] == b'42["whoami"]\n'
    assert bounds.feed(POST[20 + used:]) == 13 and bounds.at_start and not bounds.in_body


def test_a_head_past_the_limit_loses_the_connection():
    bounds = RequestBounds()
    bounds.feed(b"GET / HTTP/1.1\r\nX-Long: ")
    for _ in range(HEAD_LIMIT // 4096):
        assert not bounds.lost
        bounds.feed(b"a" * 4096)
    assert bounds.lost and bounds.too_large
    assert bounds.feed(GET) == len(GET)


def test_a_head_past_the_limit_in_one_piece_is_too_large_too():
    bounds = RequestBounds()
    bounds.feed(b"GET / HTTP/1.1\r\nX-Long: " + b"a" * HEAD_LIMIT + b"\r\n\r\n")
    assert bounds.lost and bounds.too_large and bounds.head is None
