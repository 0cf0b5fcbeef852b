"""The embedded pub/sub relay: the bus the workers' relay managers publish on.

Without a Redis (or other) adapter, a worker's python-socketio manager publishes its
emits to the master (``PUBLISH``), and the master hands each message to every other
worker past booting (``DELIVER``), as ``@socket.io/cluster-adapter`` does. A message
addressed to one session (``PUBLISH_TO``, the tag of the worker that owns the sid)
goes to that worker alone. The master never reads the payload.

A worker whose channel queue is full misses the message (counted in ``dropped``): a
slow worker must never stall the master nor the other workers.
"""
from __future__ import annotations

from cluster.protocol import frames
from cluster.protocol.frames import Kind

from .pool.pool import WorkerPool
from .pool.worker import State, Worker


class Relay:
    """Fans the workers' pub/sub messages out; counts them.

    :param pool: the workers to deliver to.
    """

    def __init__(self, pool: WorkerPool) -> None:
        self._pool = pool
        self.broadcasts = 0
        """Relay messages handed to every worker."""
        self.unicasts = 0
        """Relay messages handed to the one worker that owns the addressed sid."""
        self.dropped = 0
        """Relay deliveries dropped because a worker's channel queue was full."""
        self.bytes = 0
        """Payload bytes of the relay messages."""

    def publish(self, sender: Worker, kind: Kind, value: object) -> None:
        """Relay a parsed ``PUBLISH`` (payload) or ``PUBLISH_TO`` ((tag, payload))."""
        if kind is Kind.PUBLISH_TO:
            tag, payload = value  # type: ignore[misc]
            self._unicast(sender, tag, payload)
        else:
            self._broadcast(sender, value)  # type: ignore[arg-type]

    def _broadcast(self, sender: Worker, payload: bytes | memoryview) -> None:
        """Hand a pub/sub message from ``sender`` to every other worker."""
        self.broadcasts += 1
        self.bytes += len(payload)
        packets = frames.packets(Kind.DELIVER, payload)
        for worker in self._pool.by_pid.values():
            if worker is not sender and worker.state is not State.BOOTING:
                self.dropped += not worker.send_packets(packets)

    def _unicast(self, sender: Worker, tag: int, payload: memoryview) -> None:
        """Hand a pub/sub message to the worker tagged ``tag`` only (it owns the sid).

        When no such worker serves (it exited, or the address was a room whose name
        merely looks like a sid), everyone gets it, as for a broadcast.
        """
        target = self._pool.owner(tag)
        if target is None or target is sender:
            self._broadcast(sender, payload)
            return
        self.unicasts += 1
        self.bytes += len(payload)
        if not target.send_message(Kind.DELIVER, payload):
            self.dropped += 1

    def summary(self) -> str:
        """The counters, for the log."""
        return f"{self.broadcasts} broadcast, {self.unicasts} unicast, {self.dropped} dropped"
