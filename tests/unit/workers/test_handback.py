"""Routing per request, the worker's decision: on each request line of a kept-alive
connection, whether another worker owns the session (then the connection goes back to the
master with the bytes read). Pure, tested on recorded request prefixes; a real cluster
in every runtime: tests/e2e/test_handback.py.
"""
from __future__ import annotations

import pytest

from cluster.protocol import frames
from cluster.protocol.sids import make_sid, owner, sid_prefix
from workers.handback import goes_back, owner_elsewhere

MINE, OTHER = 7, 9
RANDOM_PART = "Zml4ZWQtcmFuZG9tLXA_"
"""A sid's random part, fixed: the test ids must be the same in every pytest process."""
MY_SID, OTHER_SID = sid_prefix(MINE) + RANDOM_PART, sid_prefix(OTHER) + RANDOM_PART


# ------------------------------------------------------------------ decision (pure)

@pytest.mark.parametrize("line, owner", [
    (f"GET /socket.io/?EIO=4&transport=polling&sid={OTHER_SID} HTTP/1.1\r\n", OTHER),
    (f"POST /socket.io/?EIO=4&transport=polling&sid={OTHER_SID} HTTP/1.1\r\n", OTHER),
    (f"GET /socket.io/?EIO=4&transport=websocket&sid={OTHER_SID} HTTP/1.1\r\n", OTHER),
    (f"GET /socket.io/?sid={OTHER_SID}&EIO=4&transport=polling HTTP/1.0\n", OTHER),
    (f"GET /socket.io/?EIO=4&transport=polling&sid={MY_SID} HTTP/1.1\r\n", None),
    ("GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\n", None),  # a new session
    ("GET /socket.io/?EIO=4&transport=polling&sid=forged HTTP/1.1\r\n", None),  # answered 400 here
    ("GET /socket.io/?EIO=4&transport=polling&sid=%1B%5B31m HTTP/1.1\r\n", None),
    (f"GET /socket.io/?EIO=4&transport=polling&sid={OTHER_SID}", None),  # cut: not a whole line
    (f"GET /index.html#sid={OTHER_SID} HTTP/1.1\r\n", None),
    ("", None),
    ("\r\n", None),
    ("garbage \x00\xff sid=\r\n", None),
])
def test_owner_elsewhere_reads_the_request_line(line, owner):
    assert owner_elsewhere(line.encode("latin-1"), MINE) == owner


def test_own_tag_is_compared_as_sids_carry_it():
    big = MINE + 2 ** 18  # tags go into sids modulo 2**18
    line = f"GET /socket.io/?EIO=4&transport=polling&sid={MY_SID} HTTP/1.1\r\n".encode()
    assert owner_elsewhere(line, owner(big)) is None


def test_a_sid_of_another_host_goes_back_even_with_this_workers_tag():
    here, there = make_sid(sid_prefix(MINE, host=3)), make_sid(sid_prefix(MINE, host=4))
    for sid, back in ((here, False), (there, True)):
        line = f"GET /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\n".encode()
        assert goes_back(line, owner(MINE, 3), new_sessions=False) is back


def test_resumed_payload_round_trips():
    data = b"POST /socket.io/?sid=x HTTP/1.1\r\nContent-Length: 2\r\n\r\n40\n\n"
    for address in (("127.0.0.9", 40000), ("::1", 1), ("", 0)):
        assert frames.split_resumed(frames.resumed(address, data)) == (address, data)
    packet = frames.resume_packet(("127.0.0.9", 1), data)
    assert packet[0] == frames.Kind.RESUME and len(packet) < frames.MAX_FRAGMENT
    for bad in (b"", b"no newline", b"127.0.0.1 x\nGET", b"\xff\xfe 1\n"):
        with pytest.raises(ValueError):
            frames.split_resumed(bad)
