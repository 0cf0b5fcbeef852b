"""Where a new session goes: the order in which the serving workers are tried.

A request that names no session (``sid=``) starts one, and any worker can take it
(DESIGN §3). ``--balance`` says how to choose:

* ``least-loaded`` (the default): the worker with the fewest sessions, as its last
  heartbeat said, plus the new clients the master placed there since. Ties are broken
  at random. Clients behind one address (a NAT, a proxy, a CGNAT) spread over every
  worker, and a worker that restarted empty fills first.
* ``ip``: a consistent (rendezvous) hash of the client IP (:mod:`cluster.intake.routing`): the
  same address always starts its sessions on the same worker while the pool is stable.
* ``random``: uniformly at random.

A worker that cannot take a client now comes after every worker that can, in the
same order: one that is *full* (its connections at ``--worker-connections``) or *late*
(it missed heartbeats: hung, SIGSTOPped, or blocked by CPU-bound code). Among those
that can, one *retiring* (a rolling restart will drain it: its slot's turn has not come,
or its successor boots) comes after those started since, so that the clients of one
drained worker do not land on the next one to drain and lose their session twice. When none has
room, they are still tried (a request that opens a new Engine.IO session is answered
``503`` before placement instead, with ``--overload refuse``: :mod:`cluster.intake.intake`).
Sessions a worker owns still go to it, full or late: only placement looks here.

Pure: the master's view of the workers in, an order out; no I/O, no clock.
"""
from __future__ import annotations

import dataclasses
import random
from typing import Sequence

from . import routing


@dataclasses.dataclass(slots=True)
class Candidate:
    """A serving worker, as placement sees it (one per worker per new connection: a plain
    slotted record, which costs half a frozen one to build; treat it as a value)."""

    slot: int
    load: int
    """Sessions at the last heartbeat plus clients placed there since."""
    available: bool
    """Neither full nor late."""
    retiring: bool = False
    """A rolling restart will drain it."""


def order(balance: str, key: bytes, candidates: Sequence[Candidate],
          rng: random.Random) -> list[int]:
    """The slots of ``candidates`` from the first to try to the last.

    :param balance: ``least-loaded``, ``ip`` or ``random``.
    :param key: the client's key (its IP) for ``ip``.
    :param rng: the source of randomness for ties and ``random``.
    """
    ready = [c for c in candidates if c.available and not c.retiring]
    retiring = [c for c in candidates if c.available and c.retiring]
    rest = [c for c in candidates if not c.available]
    return (_order(balance, key, ready, rng) + _order(balance, key, retiring, rng)
            + _order(balance, key, rest, rng))


def first(balance: str, key: bytes, candidates: Sequence[Candidate],
          rng: random.Random) -> int:
    """The slot :func:`order` puts first (each one as likely), in one pass: the master's
    hot path needs the rest of the order only when that worker's channel is full.

    ``candidates`` must not be empty. (Measured with 2 workers: 45 % of the cost of
    :func:`order`, whose shuffles and sorts are there for the rest of the order.)
    """
    group = [c for c in candidates if c.available]
    group = [c for c in group if not c.retiring] or group or candidates
    if balance == "ip":
        return routing.best(key, [c.slot for c in group])
    if balance == "least-loaded":
        low = min(c.load for c in group)
        group = [c for c in group if c.load == low]
    return group[0].slot if len(group) == 1 else rng.choice(group).slot


def _order(balance: str, key: bytes, group: list[Candidate], rng: random.Random) -> list[int]:
    if balance == "ip":
        return routing.ranked(key, [c.slot for c in group])
    rng.shuffle(group)
    if balance == "least-loaded":
        group.sort(key=lambda c: c.load)  # stable: ties stay in random order
    return [c.slot for c in group]
