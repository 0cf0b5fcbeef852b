"""The master's record of one worker process and of its end of the channel.

A :class:`Worker` holds what the master knows of one worker (slot, tag, state, load as
of its last heartbeat) and the master's end of its channel with what is queued to be
sent on it. Sends never block the master: a full channel queues a bounded number of
packets, and past that the caller is told so (a hand-off then goes to another slot, a
relay message is dropped).

Write interest is the worker's own business: the send that queues the first packet
and the flush that sends the last one tell the pool (``on_backlog``), which asks its
selector to wake it, or not, when the channel has room. No caller of :meth:`Worker.send`
ever has to remember it. The states and their transitions belong to
:class:`cluster.pool.pool.WorkerPool`; nothing here decides them.
"""
from __future__ import annotations

import collections
import dataclasses
import enum
import logging
import os
import socket
import time
from typing import Callable, Iterator

from cluster.protocol import frames
from cluster.protocol.frames import Kind

from .recycle import Limits

log = logging.getLogger("sticky_cluster.master")

OUTBOX_LIMIT = 512
"""Packets queued for one worker while its channel is full; past that, sends fail."""


class State(enum.Enum):
    """Where a worker is in its life."""

    BOOTING = "booting"  #: forked, not ready yet
    SERVING = "serving"  #: ready and routed to
    DRAINING = "draining"  #: no new clients; its sessions go on until they end


def _ignore_backlog(_worker: "Worker") -> None:
    """The default ``on_backlog``: a worker nobody watches yet."""


@dataclasses.dataclass(eq=False)
class Worker:
    """The master's record of one worker process."""

    pid: int
    slot: int
    tag: int
    sock: socket.socket
    state: State = State.BOOTING
    born: float = dataclasses.field(default_factory=time.monotonic)
    last_seen: float = dataclasses.field(default_factory=time.monotonic)
    sessions: int = 0
    """Engine.IO sessions, as of the last heartbeat."""
    connections: int = 0
    """Connections open or waiting to be served, as of the last heartbeat."""
    placed: int = 0
    """New clients placed here since the last heartbeat."""
    full: bool = False
    """At ``--worker-connections`` at the last heartbeat: new clients go elsewhere."""
    late: bool = False
    """Missed its heartbeats (hung, stopped, busy): new clients go elsewhere."""
    drain_deadline: float | None = None
    """When a draining worker is killed if it has not exited."""
    killed: bool = False
    """SIGKILL was sent; the worker is as good as gone."""
    boot_error: str | None = None
    """What the worker said when it could not boot."""
    limits: Limits = dataclasses.field(default_factory=Limits)
    """Its own ``--max-worker-memory`` and ``--max-worker-age``, jitter drawn."""
    outbox: collections.deque = dataclasses.field(default_factory=collections.deque)
    reassembler: frames.Reassembler = dataclasses.field(default_factory=frames.Reassembler)
    broken: bool = False
    """The channel failed: the worker is gone; nothing more is sent to it."""
    on_backlog: Callable[["Worker"], None] = _ignore_backlog
    """Called when the outbox gets its first packet or loses its last: the pool then
    asks, or stops asking, to be woken when the channel has room."""

    def __str__(self) -> str:
        return f"worker {self.pid} (slot {self.slot})"

    @property
    def wants_write(self) -> bool:
        """Whether packets wait for room in the channel."""
        return bool(self.outbox) and not self.broken

    def take_heartbeat(self, beat: frames.Heartbeat, connection_limit: int) -> None:
        """Take the load a heartbeat reports; say when the worker answers again after
        being late, becomes full (placement skips it) or has room again."""
        self.sessions, self.connections = beat.sessions, beat.connections
        self.placed = 0
        if self.late:
            self.late = False
            log.info("%s heartbeats again: new clients may go to it", self)
        full = self.connections >= connection_limit or bool(beat.full)
        if full != self.full:
            self.full = full
            if full and self.connections >= connection_limit:
                log.warning("%s is full: %d connections (--worker-connections %d); new clients "
                            "go to the other workers", self, self.connections, connection_limit)
            elif full:
                log.warning("%s is full: every thread busy (--threads), %d connections; new "
                            "clients go to the other workers", self, self.connections)
            else:
                log.info("%s has room again (%d connections)", self, self.connections)

    def send(self, packet: bytes, client: int | None = None) -> bool:
        """Send (or queue) one packet, with a client socket fd to hand off if given.

        Returns False, sending nothing, when the outbox is full or the channel broken.
        A handed-off client fd is closed here once it is sent; the worker has its own copy.
        """
        if self.broken:
            return False
        if self.outbox:
            if len(self.outbox) >= OUTBOX_LIMIT:
                return False
            self.outbox.append((packet, client))
            return True
        try:
            frames.send_packet(self.sock, packet, client)
        except BlockingIOError:
            self.outbox.append((packet, client))
            self.on_backlog(self)
            return True
        except OSError:
            self.broken = True
            return False
        if client is not None:
            os.close(client)
        return True

    def send_message(self, kind: Kind, payload: bytes | memoryview) -> bool:
        """Send all of one message's packets, or none when they would not fit."""
        return self.send_packets(frames.packets(kind, payload))

    def send_packets(self, packets: list[bytes]) -> bool:
        """Send all of one message's packets, or none of them when they would not fit."""
        if self.broken or len(self.outbox) + len(packets) > OUTBOX_LIMIT:
            return False
        for packet in packets:
            self.send(packet)
        return True

    def flush(self) -> None:
        """Send what the outbox holds, until the channel is full or the outbox empty."""
        while self.outbox:
            packet, client = self.outbox[0]
            try:
                frames.send_packet(self.sock, packet, client)
            except BlockingIOError:
                return
            except OSError:  # the worker is gone: keep the hand-offs for discard_outbox()
                self.broken = True
                self.on_backlog(self)
                return
            self.outbox.popleft()
            if client is not None:
                os.close(client)
        self.on_backlog(self)

    def receive(self, limit: int) -> Iterator[tuple[Kind, object, int | None]]:
        """The whole messages waiting on the channel, parsed; at most ``limit`` packets read.

        Yields (kind, value, fd): the value as :func:`cluster.protocol.frames.parse_from_worker`
        makes it, and the client socket of a ``HANDBACK``, which the caller then owns
        (any other fd is closed here). Stops when nothing more is there. Raises
        :class:`EOFError` when the worker closed its end (it is gone), and
        :class:`cluster.protocol.frames.ProtocolError` for a malformed message.
        """
        for _ in range(limit):
            try:
                packet, fd = frames.receive_packet(self.sock)
            except BlockingIOError:
                return
            except OSError:
                packet, fd = b"", None
            try:
                if not packet:
                    raise EOFError
                message = self.reassembler.feed(packet)
                if message is None:
                    continue
                kind, payload = message
                if kind is Kind.HANDBACK and fd is None:
                    raise frames.ProtocolError("HANDBACK without a client socket")
                value = frames.parse_from_worker(kind, payload)
                if kind is Kind.HANDBACK:
                    client, fd = fd, None
                    yield kind, value, client
                else:
                    yield kind, value, None
            finally:
                if fd is not None:
                    os.close(fd)

    def discard_outbox(self) -> list[tuple[bytes, int]]:
        """Empty the outbox; return the hand-offs it still held: (packet, client fd)."""
        clients = [(packet, client) for packet, client in self.outbox if client is not None]
        self.outbox.clear()
        return clients
