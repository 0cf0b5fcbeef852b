"""Where websocket frames begin in a client's stream (pure: the asyncio rate limit uses it)."""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

import rawclient
from workers.websocket_frames import FrameCounter

STREAM = b"".join(rawclient.frame(opcode, payload, fin) for opcode, payload, fin in (
    (1, b"4hello", True), (1, b"x" * 200, False), (0, b"y" * 70_000, True),
    (9, b"", True), (2, b"\x00" * 125, True)))


def test_every_frame_is_counted_whatever_its_length_field():
    assert FrameCounter().feed(STREAM) == 5


@given(st.lists(st.integers(min_value=1, max_value=len(STREAM) - 1), max_size=30))
def test_how_the_stream_is_cut_does_not_matter(cuts):
    counter = FrameCounter()
    edges = [0, *sorted(set(cuts)), len(STREAM)]
    assert sum(counter.feed(STREAM[a:b]) for a, b in zip(edges, edges[1:]) if a < b) == 5


def test_twenty_thousand_frames_in_one_chunk():
    assert FrameCounter().feed(rawclient.frame(1, b'421["echo",1]') * 20_000) == 20_000
