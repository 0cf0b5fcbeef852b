"""The master's hand-off loop in C, where it can serve: the Python side of
:mod:`cluster.intake._handoff`.

Every new connection costs the master an accept, a peek, a choice and a ``sendmsg``;
the Python loop (:class:`~cluster.intake.intake.Intake`, :class:`~cluster.intake.dispatch.
Dispatcher`) spends more of that in the interpreter than in the kernel, and one master
core serves every worker of a host. The C loop (``_handoff.c``) does the common case,
the same way: a TCP connection whose request line came with it, sent to the worker its
``sid=`` names, or placed on the least loaded (or a random) serving worker. Everything
else comes back to the Python loop as it was accepted (:meth:`FastHandOff.run`'s
leftovers), and the whole batch goes the Python way when the C loop cannot decide like
it: a worker full, late or with a backlog on its channel (placement must pass it over,
its packets must queue), balancing by IP (a rendezvous hash), several hosts, a PROXY
header or ``X-Forwarded-For`` to read.

The C loop is compiled at install (``setup.py``, optional); without a compiler, or with
``STICKY_CLUSTER_PURE_PYTHON=1`` in the master's environment, the Python loop does all,
with the same behaviour (the tests run both).
"""
from __future__ import annotations

import os
from typing import Any

from cluster.pool.pool import WorkerPool
from cluster.pool.worker import State
from cluster.protocol import frames
from cluster.setup.config import Settings

from .dispatch import Dispatcher
from .pending import Address

try:
    from . import _handoff
except ImportError:  # not compiled: the Python loop does all
    _handoff: Any = None  # type: ignore[no-redef]

PURE_PYTHON_ENV = "STICKY_CLUSTER_PURE_PYTHON"
"""Set to 1 in the master's environment for the Python loop alone."""

_HANDOFF_HEADER = frames.header(frames.Kind.HANDOFF)


def unavailable(settings: Settings) -> str | None:
    """Why the C loop cannot hand off for these settings, or None when it can."""
    if _handoff is None:
        return "not compiled (a C compiler and the Python headers at install)"
    if os.environ.get(PURE_PYTHON_ENV, "") not in ("", "0"):
        return f"{PURE_PYTHON_ENV} is set"
    if settings.route != "sid":
        return "--route ip"
    if settings.balance == "ip":
        return "--balance ip"
    if settings.proxy_protocol:
        return "--proxy-protocol"
    if settings.trusted_proxies:
        return "--forwarded-allow-ips"
    if settings.several_hosts:
        return "several hosts"
    return None


class FastHandOff:
    """Runs the C loop on a batch of new connections, with the workers' state of the moment.

    :param pool: the serving workers (placement) and each tag's worker (by sid).
    :param dispatcher: counts what the C loop hands off, as its own hand-offs.
    :param settings: ``balance`` is used (``least-loaded`` or ``random``).
    """

    def __init__(self, pool: WorkerPool, dispatcher: Dispatcher, settings: Settings) -> None:
        self._pool = pool
        self._dispatcher = dispatcher
        self._at_random = settings.balance == "random"

    def run(self, listener: int, limit: int,
            peek_size: int) -> tuple[bool, int, list[tuple[int, Address | None]]] | None:
        """Accept and hand off up to ``limit`` connections from ``listener`` (a TCP
        listener's fd, peeking ``peek_size`` bytes at most).

        Returns (False when out of file descriptors, connections accepted, the accepted
        ones left for the Python loop: (fd, client address or None: ask the socket)), or
        None, accepting nothing, when the workers' state needs the Python loop.
        """
        workers = list(self._pool.serving.values())
        if not workers:
            return None
        for worker in workers:
            if worker.full or worker.late or worker.outbox or worker.broken:
                return None
        owners = {tag: worker.sock.fileno() for tag, worker in self._pool.by_tag.items()
                  if worker.state is not State.BOOTING and not worker.outbox and not worker.broken}
        retiring = self._pool.slots_to_roll()
        if retiring:  # placement passes over the workers a rolling restart will drain
            workers = [worker for worker in workers if worker.slot not in retiring] or workers
        ok, accepted, by_sid, placed, leftovers = _handoff.hand_off(
            listener, limit, peek_size, _HANDOFF_HEADER, owners,
            [worker.sock.fileno() for worker in workers],
            [worker.sessions + worker.placed for worker in workers], self._at_random)
        sent = by_sid
        for worker, count in zip(workers, placed):
            worker.placed += count
            sent += count
        self._dispatcher.count_fast(sent, by_sid)
        return ok, accepted, leftovers
