"""The forwarder's HTTP/1.1 reading (cluster.hosts.http1): where heads and bodies end, what
a head says, and the heads it refuses (as h11, its first parser, refused them)."""
from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from cluster.hosts import http1
from cluster.hosts.http1 import CHUNKED, UNTIL_CLOSE, BodyEnd, HeadError

POST = (b"POST /socket.io/?sid=abc HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
        b"Connection: keep-alive\r\n\r\n")


def test_a_head_ends_past_its_empty_line_crlf_or_bare_lf():
    assert http1.head_end(POST + b"4abc") == len(POST)
    bare = b"GET / HTTP/1.1\nHost: x\n\n"
    assert http1.head_end(bare + b"rest") == len(bare)
    assert http1.head_end(POST[:-1]) == -1


def test_a_request_head_says_its_target_framing_and_keep_alive():
    request = http1.parse_request(POST)
    assert (request.method, request.target, request.version) == (
        b"POST", b"/socket.io/?sid=abc", (1, 1))
    assert request.framing == 4 and request.keep_alive and request.get(b"host") == [b"x"]
    assert http1.parse_request(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").framing == 0
    chunked = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n"
    assert http1.parse_request(chunked).framing == CHUNKED
    assert not http1.parse_request(b"GET / HTTP/1.0\r\n\r\n").keep_alive
    assert not http1.parse_request(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                                   ).keep_alive


@pytest.mark.parametrize("head, status", [
    (b"GET / HTTP/1.1\r\n\r\n", 400),  # no Host
    (b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: x\r\nBad Name: y\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -4\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n",
     400),
    (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501)])
def test_heads_that_could_be_framed_two_ways_or_are_not_http_are_refused(head, status):
    with pytest.raises(HeadError) as raised:
        http1.parse_request(head)
    assert raised.value.status == status


def test_the_same_length_twice_is_one_length():
    head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\n"
    assert http1.parse_request(head).framing == 4


def test_a_response_head_says_its_status_and_framing():
    response = http1.parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n")
    assert response.status == 200 and response.response_framing(b"GET") == 2
    assert response.response_framing(b"HEAD") == 0
    assert http1.parse_response(b"HTTP/1.1 200 OK\r\n\r\n").response_framing(b"GET") == (
        UNTIL_CLOSE)
    assert http1.parse_response(b"HTTP/1.1 204 No Content\r\n\r\n").response_framing(
        b"GET") == 0
    assert http1.parse_response(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                b"Connection: Upgrade\r\n\r\n").upgrade
    with pytest.raises(HeadError):
        http1.parse_response(b"HTTP/1.1 2000 OK\r\n\r\n")


def test_the_hop_header_is_added_at_the_end_of_the_head():
    line = b"x-sticky-cluster-hop: 1\r\n"
    assert http1.with_headers(POST, line) == POST[:-2] + line + b"\r\n"
    assert http1.with_headers(b"GET / HTTP/1.0\nA: b\n\n", line) == (
        b"GET / HTTP/1.0\r\nA: b\r\n" + line + b"\r\n")


def chunks(pieces: list[bytes], trailer: bytes = b"") -> bytes:
    return b"".join(b"%x;ext=1\r\n%s\r\n" % (len(piece), piece) for piece in pieces if piece) + (
        b"0\r\n" + trailer + b"\r\n")


@given(st.lists(st.binary(max_size=40), max_size=6), st.booleans(), st.binary(max_size=30),
       st.data())
def test_a_chunked_body_ends_where_it_ends_however_it_is_cut(pieces, trailer, after, data):
    body = chunks(pieces, b"Expires: never\r\n" if trailer else b"")
    stream = body + after
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=5)))
    end = BodyEnd(CHUNKED)
    taken = 0
    for start, stop in zip([0, *cuts], [*cuts, len(stream)]):
        piece = stream[start:stop]
        used = end.feed(piece)
        taken += used
        if end.done:
            break
        assert used == len(piece)
    assert end.done and taken == len(body)


def test_a_length_body_ends_after_its_length_and_until_close_never():
    end = BodyEnd(5)
    assert end.feed(b"abc") == 3 and not end.done
    assert end.feed(b"dexyz") == 2 and end.done
    assert BodyEnd(0).done
    forever = BodyEnd(UNTIL_CLOSE)
    assert forever.feed(b"abc") == 3 and not forever.done


@pytest.mark.parametrize("body", [b"zz\r\n", b"3\r\nabcX\r\n", b"0\r\nbad trailer\r\n",
                                  b"1" * 5000])
def test_a_broken_chunked_body_is_an_error(body):
    with pytest.raises(HeadError):
        BodyEnd(CHUNKED).feed(body)


def test_a_head_read_twice_says_the_same_and_a_bad_one_is_refused_each_time():
    head = b"GET /x HTTP/1.1\r\nHost: x\r\nx-sticky-cluster-hop: 2\r\n\r\n"
    for _again in range(2):
        request = http1.parse_request(head)
        assert (request.target, request.hop, request.framing) == (b"/x", True, 0)
        with pytest.raises(HeadError):
            http1.parse_request(b"GET /x HTTP/1.1\r\n\r\n")  # no Host


def test_a_response_with_a_bad_length_is_refused_each_time_its_body_is_read_only():
    for _again in range(2):
        response = http1.parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n")
        assert response.response_framing(b"HEAD") == 0
        with pytest.raises(HeadError) as raised:
            response.response_framing(b"GET")
        assert raised.value.status == 400


@pytest.mark.parametrize("head, framing, host, hop", [
    (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0004\r\n\r\n", 4, True, False),
    (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 3\r\n\r\n", 3, True, False),
    (b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length:  7 \r\n\r\n", 7, True, False),
    (b"GET / HTTP/1.1\r\nHOST: x\r\nX-Sticky-Cluster-Hop: 2\r\n\r\n", 0, True, True),
    (b"GET / HTTP/1.0\r\nX-Other: 1\r\n\r\n", 0, False, False)])
def test_a_request_head_read_in_one_pass_says_its_framing_host_and_hop(head, framing, host,
                                                                      hop):
    request = http1.parse_request(head)
    assert (request.framing, request.has_host, request.hop) == (framing, host, hop)
    assert request.has_host == bool(request.get(b"host"))


@pytest.mark.parametrize("length", [b"", b"4x", b"\xd9\xa4", b"1" * 19])
def test_a_bad_single_length_is_refused(length):
    with pytest.raises(HeadError) as raised:
        http1.parse_request(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: " + length
                            + b"\r\n\r\n")
    assert raised.value.status == 400


_FACTS = ("head", "method", "target", "version", "headers", "framing", "keep_alive", "upgrade",
          "has_host", "hop")
_LINES = st.sampled_from([b"Host: x\r\n", b"Content-Length: 4\r\n", b"Connection: close\r\n",
                          b"Connection: Upgrade\r\n", b"Transfer-Encoding: chunked\r\n",
                          b"X-Sticky-Cluster-Hop: 2\r\n", b"X: y\n", b" folded\r\n",
                          b"Bad Name: y\r\n"])
_REQUEST_LINES = st.sampled_from([b"GET /?sid=a&t=1 HTTP/1.1", b"POST /?sid=a&t=2 HTTP/1.1",
                                  b"GET /?t=3 HTTP/1.0", b"GET  /x HTTP/1.1", b"GET /x HTTP/1.1\n"
                                  b"Host: y", b"GET /?t=4 HTTP/2.0"])


def _reading(head: bytes) -> object:
    try:
        return {fact: getattr(http1.parse_request(head), fact) for fact in _FACTS}
    except HeadError as exc:
        return exc.status


@given(st.lists(_REQUEST_LINES, min_size=2, max_size=4), st.lists(_LINES, max_size=4))
def test_a_request_head_kept_by_its_header_lines_reads_as_one_read_anew(lines, headers):
    for line in lines:  # the same header lines after each request line, one after the other
        head = line + b"\r\n" + b"".join(headers) + b"\r\n"
        try:
            fresh: object = {fact: getattr(http1.RequestHead(head), fact) for fact in _FACTS}
        except HeadError as exc:
            fresh = exc.status
        assert _reading(head) == fresh
