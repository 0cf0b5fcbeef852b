"""Which worker slot a client goes to: rendezvous (highest random weight) hashing.

Every (client key, slot) pair gets a pseudo-random score; a client goes to the live
slot with the highest score. When a slot is down, added or removed, only the clients
whose best slot it was move; ``hash % N`` would move almost everyone.
"""
from __future__ import annotations

import hashlib
from typing import Iterable


def score(key: bytes, slot: int) -> bytes:
    """The score of ``slot`` for ``key`` (compared as bytes)."""
    return hashlib.blake2b(key, digest_size=8, salt=slot.to_bytes(16, "little")).digest()


def ranked(key: bytes, slots: Iterable[int]) -> list[int]:
    """``slots`` from the best to the worst for ``key``."""
    return sorted(slots, key=lambda slot: score(key, slot), reverse=True)


def best(key: bytes, slots: Iterable[int]) -> int:
    """The first of :func:`ranked` (``slots`` must not be empty), without sorting the rest."""
    return max(slots, key=lambda slot: score(key, slot))
