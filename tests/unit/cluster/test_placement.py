"""Placement of new sessions (``--balance``), and the workers it passes over.

The order is a pure function, tested on its own, as is the heartbeat's load it reads. End
to end (clients behind one address, a full or a stopped worker):
tests/e2e/test_placement.py.
"""
from __future__ import annotations

import random

import pytest

from cluster.intake import routing
from cluster.intake.placement import Candidate, first, order


# ------------------------------------------------------------------ order (pure)

def test_least_loaded_goes_to_the_fewest_sessions():
    candidates = [Candidate(0, 5, True), Candidate(1, 2, True), Candidate(2, 9, True)]
    assert order("least-loaded", b"ip", candidates, random.Random(1)) == [1, 0, 2]


def test_least_loaded_breaks_ties_at_random():
    candidates = [Candidate(slot, 3, True) for slot in range(4)]
    firsts = {order("least-loaded", b"ip", candidates, random.Random(seed))[0] for seed in range(60)}
    assert firsts == {0, 1, 2, 3}


def test_a_full_or_late_worker_comes_after_every_other():
    candidates = [Candidate(0, 0, False), Candidate(1, 7, True), Candidate(2, 1, False),
                  Candidate(3, 4, True)]
    assert order("least-loaded", b"ip", candidates, random.Random(2)) == [3, 1, 0, 2]
    for seed in range(20):
        assert set(order("random", b"ip", candidates, random.Random(seed))[:2]) == {1, 3}


def test_a_worker_a_roll_will_drain_comes_after_those_started_since_before_a_full_one():
    candidates = [Candidate(0, 9, True), Candidate(1, 0, True, retiring=True),
                  Candidate(2, 0, False), Candidate(3, 4, True, retiring=True)]
    assert order("least-loaded", b"ip", candidates, random.Random(3)) == [0, 1, 3, 2]
    assert first("least-loaded", b"ip", candidates, random.Random(3)) == 0
    for seed in range(20):
        assert first("random", b"ip", candidates, random.Random(seed)) == 0
    retiring_only = [Candidate(0, 9, False), Candidate(1, 5, True, retiring=True),
                     Candidate(2, 2, True, retiring=True)]
    assert first("least-loaded", b"ip", retiring_only, random.Random()) == 2
    key = b"10.0.0.1"
    assert order("ip", key, candidates, random.Random())[0] == 0


def test_ip_is_the_consistent_hash_among_the_workers_with_room():
    slots = list(range(5))
    for index in range(50):
        key = f"10.0.{index}.1".encode()
        everyone = [Candidate(slot, 0, True) for slot in slots]
        assert order("ip", key, everyone, random.Random()) == routing.ranked(key, slots)
        best = routing.ranked(key, slots)[0]
        skipping = [Candidate(slot, 0, slot != best) for slot in slots]
        assert order("ip", key, skipping, random.Random()) == (
            [s for s in routing.ranked(key, slots) if s != best] + [best])


def test_first_is_what_the_order_puts_first():
    loads = [Candidate(0, 5, True), Candidate(1, 2, True), Candidate(2, 1, False)]
    assert first("least-loaded", b"ip", loads, random.Random()) == 1
    assert first("least-loaded", b"ip", [Candidate(0, 3, False), Candidate(1, 1, False)],
                 random.Random()) == 1
    ties = [Candidate(slot, 3, True) for slot in range(4)]
    assert {first("least-loaded", b"ip", ties, random.Random(seed)) for seed in range(60)} == {
        0, 1, 2, 3}
    assert {first("random", b"ip", loads, random.Random(seed)) for seed in range(60)} == {0, 1}
    slots = list(range(5))
    for index in range(50):
        key = f"10.0.{index}.1".encode()
        everyone = [Candidate(slot, 0, True) for slot in slots]
        assert first("ip", key, everyone, random.Random()) == routing.ranked(key, slots)[0]


def test_none_with_room_still_gives_an_order():
    candidates = [Candidate(0, 3, False), Candidate(1, 1, False)]
    assert order("least-loaded", b"ip", candidates, random.Random()) == [1, 0]
    assert order("least-loaded", b"ip", [], random.Random()) == []


# ------------------------------------------------------------ the heartbeat's load

def test_heartbeat_payload_round_trips_and_rejects_garbage():
    from cluster.protocol import frames

    beat = frames.Heartbeat(12, 30)
    assert frames.Heartbeat.parse(beat.encode()) == beat
    assert frames.Heartbeat.parse(b"7") == frames.Heartbeat(7, 0)  # sessions only
    for bad in (b"", b" ", b"1 2 3 4", b"-1 2", b"1  2", b"x", b"1 2\n", b"9" * 13, "٣".encode()):
        with pytest.raises(frames.ProtocolError):
            frames.Heartbeat.parse(bad)
