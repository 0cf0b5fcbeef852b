"""The sids of the protocol (cluster.protocol.sids): the tag space, the tag a sid carries, and the
sid of a request line, as the master and the workers both read it."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cluster.protocol.frames import Kind, Reassembler, addressed, packets, parse_from_worker
from cluster.protocol.sids import (HOST_LIMIT, SID_LENGTH, TAG_LIMIT, host_of, make_sid, owner, owner_of,
                                   opens_session, request_sid, sid_prefix, tag_of)

SID_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"


# -- the tag space -------------------------------------------------------------------------


@given(st.integers(1, TAG_LIMIT - 1))
def test_every_tag_the_master_gives_comes_back_from_a_sid(tag: int) -> None:
    sid = make_sid(sid_prefix(tag))
    assert len(sid) == SID_LENGTH
    assert request_sid(f"GET /socket.io/?EIO=4&sid={sid} HTTP/1.1\r\n".encode()) == sid
    assert tag_of(sid) == tag


@pytest.mark.parametrize("tag", [1, TAG_LIMIT - 1])
def test_a_message_addressed_to_any_tag_reaches_the_master_with_that_tag(tag: int) -> None:
    [packet] = packets(Kind.PUBLISH_TO, addressed(tag, b"payload"))
    kind, payload = Reassembler().feed(packet)
    found, relayed = parse_from_worker(kind, payload)
    assert (found, bytes(relayed)) == (tag, b"payload")


@given(st.integers(1, TAG_LIMIT - 1), st.integers(0, HOST_LIMIT - 1))
def test_a_sid_names_its_host_first_then_its_worker(tag: int, host: int) -> None:
    sid = make_sid(sid_prefix(tag, host))
    assert (host_of(sid), tag_of(sid), owner_of(sid)) == (host, tag, owner(tag, host))
    assert sid.startswith(sid_prefix(0, host)[:2])  # a balancer routes by the first two


def test_a_host_id_outside_the_space_is_refused() -> None:
    with pytest.raises(ValueError):
        sid_prefix(1, HOST_LIMIT)


def test_a_sid_of_another_length_or_alphabet_names_no_worker() -> None:
    sid = make_sid(sid_prefix(5))
    assert tag_of(sid[:-1]) is None
    assert tag_of("." + sid[1:]) is None
    assert host_of(sid[:-1]) is None


# -- request_sid ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("head", "sid"),
    [
        (b"GET /socket.io/?EIO=4&transport=polling&t=abc&sid=AbC-_123 HTTP/1.1\r\nHost: x\r\n\r\n", "AbC-_123"),
        (b"POST /socket.io/?sid=xyz&EIO=4&transport=polling HTTP/1.1\r\n", "xyz"),
        (b"GET /socket.io/?EIO=4&transport=websocket&sid=s1 HTTP/1.1\n", "s1"),
        (b"GET /socket.io/?EIO=4&sid=first&sid=second HTTP/1.1\r\n", "first"),
        (b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\n", None),
        (b"GET /socket.io/?EIO=4&xsid=abc HTTP/1.1\r\n", None),
        (b"GET /socket.io/?EIO=4&sidx=abc HTTP/1.1\r\n", None),
        (b"GET /socket.io/?sid=ab%2Dc HTTP/1.1\r\n", None),
        (b"GET /socket.io/?sid=ab.c HTTP/1.1\r\n", None),
        (b"GET /socket.io/?sid= HTTP/1.1\r\n", None),
        (b"GET /socket.io/?sid=" + b"a" * 64 + b" HTTP/1.1\r\n", "a" * 64),
        (b"GET /socket.io/?sid=" + b"a" * 65 + b" HTTP/1.1\r\n", None),
        (b"GET /socket.io/sid=abc HTTP/1.1\r\n", None),
        (b"GET /socket.io/?EIO=4#sid=abc HTTP/1.1\r\n", None),
        (b"GET /socket.io/?sid=abc#frag", "abc"),
        (b"GET /a#b?sid=abc HTTP/1.1\r\n", None),
        (b"GET /socket.io/?sid=abc HTTP/1.1\r\nCookie: x?sid=zzz\r\n", "abc"),
        (b"GET /socket.io/?EIO=4\r\nX: /?sid=abc\r\n", None),
        (b"GET /socket.io/?sid=abc\r\n", "abc"),  # HTTP/0.9 style: the line is complete
        # truncated buffers
        (b"GET /socket.io/?EIO=4&sid=abc", None),  # value may go on
        (b"GET /socket.io/?EIO=4&sid=abc\r", None),
        (b"GET /socket.io/?EIO=4&sid=abc&", "abc"),
        (b"GET /socket.io/?EIO=4&sid=abc HTT", "abc"),
        (b"GET /socket.io/?EIO=4&si", None),
        (b"GET /socket.io/?EI", None),
        (b"", None),
        (b"GET", None),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", None),
        (b"GET /?sid=\xff\xfe HTTP/1.1\r\n", None),
    ],
)
def test_request_sid_examples(head: bytes, sid: str | None) -> None:
    assert request_sid(head) == sid


# -- opens_session -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("head", "opens"),
    [
        (b"GET /socket.io/?EIO=4&transport=polling&t=Nx HTTP/1.1\r\nHost: x\r\n\r\n", True),
        (b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n", True),
        (b"GET /socket.io/?transport=polling&EIO=3 HTTP/1.1\r\n", True),
        (b"GET /socket.io/?EIO=4&transport=polling&sid=abc HTTP/1.1\r\n", False),
        (b"POST /socket.io/?sid=abc&EIO=4 HTTP/1.1\r\n", False),
        (b"GET / HTTP/1.1\r\n", False),
        (b"GET /index.html?v=2 HTTP/1.1\r\n", False),
        (b"GET /socket.io/?xEIO=4 HTTP/1.1\r\n", False),
        (b"GET /socket.io/?EIO=4#x HTTP/1.1\r\n", True),
        # truncated: a sid may follow what is there
        (b"GET /socket.io/?EIO=4&transport=polling&t=N", False),
        (b"GET /socket.io/?EIO=4&transport=polling HTT", True),
        (b"", False),
        (b"\x16\x03\x01\x02\x00", False),
    ],
)
def test_opens_session_examples(head: bytes, opens: bool) -> None:
    assert opens_session(head) is opens


@given(st.binary(max_size=300))
def test_request_sid_arbitrary_bytes(head: bytes) -> None:
    sid = request_sid(head)
    assert sid is None or (1 <= len(sid) <= 64 and set(sid) <= set(SID_ALPHABET))


query_params = st.lists(
    st.tuples(st.sampled_from(["EIO", "transport", "t", "xsid", "b64"]), st.text(SID_ALPHABET, max_size=8)),
    max_size=4,
)


@given(query_params, st.text(SID_ALPHABET, min_size=1, max_size=64), query_params, st.booleans())
def test_request_sid_every_prefix(before: list, sid: str, after: list, with_version: bool) -> None:
    up_to_sid = "GET /socket.io/?" + "&".join([f"{k}={v}" for k, v in before] + [f"sid={sid}"])
    rest = "".join(f"&{k}={v}" for k, v in after) + (" HTTP/1.1" if with_version else "")
    line = f"{up_to_sid}{rest}\r\nHost: x\r\n\r\n".encode()
    assert request_sid(line) == sid
    value_end = len(up_to_sid)
    # the value ends at "&" or " ", else at the end of the line
    terminator = value_end if after or with_version else line.index(b"\n")
    for cut in range(len(line)):
        found = request_sid(line[:cut])
        assert found in (None, sid)  # never a cut-short value
        if cut > terminator:
            assert found == sid
