"""Where websocket frames begin in a client's stream (pure: the asyncio rate limit uses it)."""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tests.support import rawclient
from workers.asyncio.websocket_frames import FrameCounter

STREAM = b"".join(rawclient.frame(opcode, payload, fin) for opcode, payload, fin in (
    (1, b"4hello", True), (1, b"x" * 200, False), (0, b"y" * 70_000, True),
    (9, b"", True), (2, b"\x00" * 125, True)))


STARTS = [0, 12, 220, 70_234, 70_240]
"""Where the frames of :data:`STREAM` begin (headers of 2+4, 4+4, 10+4 bytes with the mask)."""


def test_every_frame_is_found_whatever_its_length_field():
    assert FrameCounter().starts(STREAM) == STARTS


@given(st.lists(st.integers(min_value=1, max_value=len(STREAM) - 1), max_size=30))
def test_how_the_stream_is_cut_does_not_matter(cuts):
    """A frame whose header is cut begins where its first byte is, maybe in an earlier
    chunk (a negative offset): the offsets add up to the same places."""
    counter = FrameCounter()
    edges = [0, *sorted(set(cuts)), len(STREAM)]
    found = [a + at for a, b in zip(edges, edges[1:]) if a < b
             for at in counter.starts(STREAM[a:b])]
    assert found == STARTS


def test_twenty_thousand_frames_in_one_chunk():
    call = rawclient.frame(1, b'421["echo",1]')
    assert FrameCounter().starts(call * 20_000) == list(range(0, 20_000 * len(call), len(call)))
