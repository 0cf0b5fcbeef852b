"""The master's hot path: choose each connection's worker and hand the socket over.

A request whose ``sid=`` was made by a live worker (serving or draining) goes to that
worker (the sid carries its tag); anything else is placed (:mod:`cluster.intake.placement`,
``--balance``). What the master looked at before (the request line, the client's real
address) is the :class:`~cluster.intake.intake.Intake`'s business. After the hand-off the master
closes its copy of the socket and never sees the connection again, unless a worker hands
it back: a keep-alive connection whose next request names a session of another worker
comes back with the bytes the worker read (:meth:`Dispatcher.hand_back`), and goes on,
with them, to the owner; one whose next request starts a new session comes back to be
placed like a new connection (on the same worker when placement picks it). The master
copies those few bytes once; it never reads the connection itself, and keeps no
per-session state.

With several hosts (``--host-id``, ``--advertise``, ``--peers``), a sid that names another
host goes to the forwarder (:mod:`cluster.hosts.forwarder`, a process of its own): the
connection is handed (or, after a worker's hand-back, resumed) to it as to a worker, and
it relays that request to the owner's host. While the forwarder is not up (booting,
respawning) those connections are held, never placed on a worker; a request the
forwarder hands back (it is for this host after all) is routed like a worker's
hand-back: to its owner here, else placed, where the worker answers an unknown sid.

While no worker serves (cold start, all respawning), the master does not accept
(connections wait in the listen backlog), and the few it already holds (waiting for
their first bytes, or stranded on a dead worker) wait in a bounded list until one
serves. A worker's channel that is full is passed over for the next slot in placement
order.
"""
from __future__ import annotations

import logging
import os
import random
import socket
import stat
import time

from cluster.pool.pool import WorkerPool
from cluster.pool.worker import Worker
from cluster.protocol import frames
from cluster.protocol.bursts import BurstLog
from cluster.protocol.sids import TAG_LIMIT, owner_of, request_sid
from cluster.setup.config import Settings

from . import placement
from .pending import Address

log = logging.getLogger("sticky_cluster.master")

HOLD_LIMIT = 1024
"""Connections the master holds at most while no worker serves; past that, closed."""
CLIENT_FAMILIES = (socket.AF_INET, socket.AF_INET6, socket.AF_UNIX)


def is_client_socket(fd: int) -> bool:
    """Whether ``fd`` can be a client's connection: a stream socket of the families the
    master listens on, not a listening one. A worker hands back what it likes; a pipe
    or a datagram socket passed on would break the worker that gets it."""
    try:
        if not stat.S_ISSOCK(os.fstat(fd).st_mode):
            return False
        probe = socket.socket(fileno=fd)  # reads SO_TYPE and the family
    except OSError:
        return False
    try:
        return (probe.type == socket.SOCK_STREAM and probe.family in CLIENT_FAMILIES
                and not probe.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))
    except OSError:
        return False
    finally:
        probe.detach()


class _Forward:
    """The owner of a sid of another host: the forwarder, up or not."""

    def __repr__(self) -> str:
        return "FORWARD"


FORWARD = _Forward()
"""What :meth:`Dispatcher._owner_of` says for a sid of another host (several hosts)."""


class Dispatcher:
    """Hands each connection to the worker it belongs to.

    :param pool: the workers to route to: the serving worker of each slot, the owner
                 of a tag.
    :param settings: ``route`` and ``balance`` are used.
    """

    def __init__(self, pool: WorkerPool, settings: Settings) -> None:
        self._pool = pool
        self._by_sid = settings.route == "sid"
        self._balance = settings.balance if self._by_sid else "ip"
        self._rng = random.Random()
        self._held: list[tuple[int, Address | None, bytes | None]] = []
        self._several_hosts = settings.several_hosts
        self._refuse_when_overloaded = settings.overload == "refuse"
        self.host = 0
        """This host's id (several hosts: set once claimed, before any connection)."""
        self.forwarder: Worker | None = None
        """The forwarder's channel while it is up (several hosts), else None."""
        self._held_forward: list[tuple[int, Address | None, bytes | None]] = []
        self.forwarded = 0
        """Connections handed (or resumed) to the forwarder: their request is another host's."""
        self.forward_held = 0
        """Connections of another host held while the forwarder was not up."""
        self.forwarded_back = 0
        """Connections the forwarder handed back: their request was this host's."""
        self._releasing = False
        self._unkeyed = 0
        self.handed_off = 0
        """Connections handed to a worker."""
        self.by_sid = 0
        """Connections handed to the worker named by their sid."""
        self.rerouted = 0
        """Connections that went to another slot because their slot's channel was full."""
        self.dropped = 0
        """Connections closed because no worker could take them."""
        self.handed_back = 0
        """Connections a worker handed back for a request of another worker's session,
        taken by that worker (one whose channel was full is counted as ``rerouted``)."""
        self.returned = 0
        """Hand-backs that no live worker owned: taken back by their worker, which answers."""
        self.placed_back = 0
        """Hand-backs of a request that starts a new session, placed (counted with the
        placements, not in :attr:`handback_seconds`)."""
        self.handback_seconds = 0.0
        """CPU time the master spent on hand-backs."""
        self.not_sockets = BurstLog(log, logging.WARNING,
                                    "%s handed back a file that is not a stream socket: "
                                    "closed, not passed on")
        """Hand-backs whose file was not a client's connection (``count``), closed."""
        self.held = 0
        """Connections held while no worker served (or every worker's channel was full)."""
        self.past_full = 0
        """Placements that passed over a full worker."""
        self.past_late = 0
        """Placements that passed over a late (silent) worker."""

    @property
    def balance(self) -> str:
        """How a request that names no live session is placed: ``least-loaded``,
        ``random`` or ``ip`` (always ``ip`` with ``--route ip``)."""
        return self._balance

    @property
    def overloaded(self) -> bool:
        """Whether a new Engine.IO session is to be answered ``503`` now (``--overload
        refuse``): workers serve, and every one of them is late or full."""
        if not self._refuse_when_overloaded:
            return False
        serving = self._pool.serving
        return bool(serving) and all(w.full or w.late for w in serving.values())

    def close(self) -> None:
        """Close the connections held (the master stops, or a new child forgets them)."""
        for fd, _client, _data in self._held + self._held_forward:
            os.close(fd)
        self._held.clear()
        self._held_forward.clear()

    # -------------------------------------------------------------------- route

    def route(self, fd: int, client: Address | None, sid: str | None) -> None:
        """Hand the client socket ``fd`` off: to the live worker that made ``sid`` (the
        request line's, when routing by sid), else where it is placed."""
        self._deliver(fd, client, self._owner_of(sid) if sid else None)

    def hand_off(self, fd: int, address: tuple[str, int] | str) -> None:
        """Give the client socket ``fd`` to the worker its address routes to."""
        self._deliver(fd, address if isinstance(address, tuple) else None, None)

    def hand_back(self, sender: Worker, fd: int, address: tuple[str, int], data: bytes) -> None:
        """Pass a connection ``sender`` handed back to the worker that owns its request.

        ``address`` is the client's and ``data`` the bytes ``sender`` read (checked by
        :func:`cluster.protocol.frames.parse_from_worker`). A request that names no sid
        starts a new session: it is placed as a new connection's first request is
        (``sender`` included). When no other live worker owns the request's session, the
        connection goes back to ``sender``, which answers it as it would any unknown sid (the
        first request of a resumed connection is never handed back). A file that is not a
        client's connection (:func:`is_client_socket`) is closed and counted, never passed on.
        """
        started = time.process_time()
        if not is_client_socket(fd):
            os.close(fd)
            self.not_sockets.note(sender)
            return
        client = address if address[0] else None
        sid = request_sid(data)
        if sid is None:
            self.placed_back += 1
            self._deliver(fd, client, None, data)
            return
        owner = self._owner_of(sid)
        home = owner is None or owner is sender
        if owner is FORWARD:
            self._deliver(fd, client, owner, data)
        elif self._deliver(fd, client, sender if home else owner, data):
            if home:
                self.returned += 1
            else:
                self.handed_back += 1
        self.handback_seconds += time.process_time() - started

    def hand_back_from_forwarder(self, fd: int, address: tuple[str, int], data: bytes) -> None:
        """Route a connection the forwarder handed back: its request (in ``data``, read
        by the forwarder) names no other host. To the live worker of this host that owns
        its sid, else placed as a new connection's first request (the worker that gets
        it answers an unknown sid, or starts a session); never back to the forwarder."""
        if not is_client_socket(fd):
            os.close(fd)
            self.not_sockets.note("the forwarder")
            return
        self.forwarded_back += 1
        owner = self._owner(data)
        self._deliver(fd, address if address[0] else None,
                      None if owner is FORWARD else owner, data)

    def redeliver(self, packet: bytes, fd: int) -> None:
        """Route again a hand-off (or a resumed connection) queued for a worker that died."""
        if packet[0] == frames.Kind.RESUME:
            address, data = frames.split_resumed(frames.payload_of(packet))
            self._deliver(fd, address if address[0] else None, self._owner(data), data)
        else:
            self.hand_off(fd, frames.decode_address(frames.payload_of(packet)))

    @property
    def holding(self) -> bool:
        """Whether connections wait for a worker, or for the forwarder, that takes them
        (:meth:`release`)."""
        return bool(self._held) or (bool(self._held_forward) and self.forwarder is not None)

    def release(self) -> None:
        """Route the connections held while no worker (or no forwarder) could take them:
        when one serves again, and on every turn of the loop while some wait."""
        if self._held_forward and self.forwarder is not None:
            held_forward, self._held_forward = self._held_forward, []
            self._releasing = True
            try:
                for fd, client, data in held_forward:
                    self._deliver(fd, client, FORWARD, data)
            finally:
                self._releasing = False
        if not self._pool.serving:
            return
        held, self._held = self._held, []
        self._releasing = True  # one that is held again is not counted again
        try:
            for fd, client, data in held:
                self._deliver(fd, client, self._owner(data) if data else None, data)
        finally:
            self._releasing = False

    def count_fast(self, sent: int, by_sid: int) -> None:
        """Count the hand-offs of the C loop (:mod:`cluster.intake.fast_path`): ``sent``
        in all, ``by_sid`` of them to the worker their sid names."""
        self.handed_off += sent
        self.by_sid += by_sid

    # ------------------------------------------------------------------- finish

    def _owner(self, head: bytes) -> Worker | _Forward | None:
        """The live worker that made the sid of the request in ``head``, if any
        (:data:`FORWARD` for another host's)."""
        sid = request_sid(head)
        return self._owner_of(sid) if sid else None

    def _owner_of(self, sid: str) -> Worker | _Forward | None:
        """The live worker that made ``sid``, if any; :data:`FORWARD` when it names
        another host (several hosts only: with one host, every sid is taken as ours)."""
        found = owner_of(sid)
        if found is None:
            return None
        host, tag = divmod(found, TAG_LIMIT)
        if host != self.host and self._several_hosts:
            return FORWARD
        return self._pool.owner(tag)

    def _deliver(self, fd: int, client: Address | None, owner: Worker | _Forward | None,
                 data: bytes | None = None) -> bool:
        """Send ``fd`` to ``owner``, else to the first placed worker that takes it.

        ``data``: the bytes of the connection already read (a hand-back), which the
        worker serves first. With no worker serving, the connection is held. True when
        ``owner`` took it.
        """
        if client is None:  # a Unix-socket client has no address: spread them
            address = ("", 0)
            self._unkeyed += 1
            key = self._unkeyed.to_bytes(8, "little")
        else:
            address = client
            key = client[0].encode()
        packet = (frames.handoff_packet(address) if data is None
                  else frames.resume_packet(address, data))
        if owner is not None:
            if owner is FORWARD:
                return self._forward(fd, client, packet, data)
            if self._send(owner, packet, fd):  # type: ignore[arg-type]
                self.by_sid += 1
                return True
        serving = self._pool.serving
        if not serving:
            self._hold(fd, client, data)
            return False
        candidates, full, late = self._candidates(serving)
        first = placement.first(self._balance, key, candidates, self._rng)
        if self._place(serving[first], packet, fd, full, late):
            self.rerouted += owner is not None
            return False
        for slot in placement.order(self._balance, key, candidates, self._rng):
            if slot != first and self._place(serving[slot], packet, fd, full, late):
                self.rerouted += 1
                return False
        self._hold(fd, client, data)  # every channel is full or broken: try again soon
        return False

    def _candidates(self, serving: dict[int, Worker]
                    ) -> tuple[list[placement.Candidate], bool, bool]:
        """The serving workers as placement sees them; whether any is full, any late."""
        candidates = []
        full = late = False
        retiring = self._pool.slots_to_roll()
        for slot, worker in serving.items():
            full |= worker.full
            late |= worker.late
            candidates.append(placement.Candidate(slot, worker.sessions + worker.placed,
                                                  not (worker.full or worker.late),
                                                  slot in retiring))
        return candidates, full, late

    def _place(self, worker: Worker, packet: bytes, fd: int, full: bool, late: bool) -> bool:
        """Send a new client to ``worker``; count the full or late workers it was
        placed past (``full``, ``late``: whether any serving worker is)."""
        if not self._send(worker, packet, fd):
            return False
        worker.placed += 1
        if (full or late) and not (worker.full or worker.late):
            self.past_full += full
            self.past_late += late
        return True

    def _forward(self, fd: int, client: Address | None, packet: bytes,
                 data: bytes | None) -> bool:
        """Hand ``fd`` to the forwarder; hold it while the forwarder is not up or its
        channel is full (never placed here: its session lives on another host)."""
        forwarder = self.forwarder
        if forwarder is not None and forwarder.send(packet, fd):
            self.forwarded += 1
            return True
        if len(self._held_forward) >= HOLD_LIMIT:
            os.close(fd)
            self.dropped += 1
            return False
        self.forward_held += not self._releasing
        self._held_forward.append((fd, client, data))
        return False

    def _hold(self, fd: int, client: Address | None, data: bytes | None) -> None:
        """Keep ``fd`` until a worker takes it (:meth:`release`); close it past the limit."""
        if len(self._held) >= HOLD_LIMIT:
            os.close(fd)
            self.dropped += 1
            return
        self.held += not self._releasing
        self._held.append((fd, client, data))

    def _send(self, worker: Worker, packet: bytes, fd: int) -> bool:
        if not worker.send(packet, fd):
            return False
        self.handed_off += 1
        return True
