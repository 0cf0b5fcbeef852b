"""What the worker pool is wired to: the master's ears, a selector, a process starter.

The pool (:mod:`cluster.pool.pool`) makes no system call and knows nothing of the master:
every side effect goes through one of these, so that tests drive the pool with fakes.
The master wires the real ones: :class:`SelectorWatcher` on its selector,
:class:`cluster.pool.supervisor.Forker` as the starter, and its own methods as the hooks.
"""
from __future__ import annotations

import dataclasses
import selectors
import socket
from typing import Callable, Protocol

from cluster.protocol.frames import Kind

from .worker import Worker


class ProcessStarter(Protocol):
    """Makes and reaps worker processes (:class:`cluster.pool.supervisor.Forker`)."""

    def start(self, slot: int, tag: int, warm: bool = True) -> tuple[int, socket.socket]:
        """Start a worker: its pid and the master's end of its channel (non-blocking).
        ``warm``: from the workers' template when there is one; False for the successor
        of a worker that died unasked (:meth:`cluster.pool.supervisor.Forker.start`)."""

    def reap(self) -> list[tuple[int, int]]:
        """The children that have exited since the last call: (pid, wait status)."""

    def memory(self, pid: int) -> int | None:
        """Bytes of resident memory of worker ``pid``; None when it cannot be read."""


class Watcher(Protocol):
    """Wakes the pool when a worker's channel is readable (always) or writable (asked)."""

    def watch(self, sock: socket.socket, events: int,
              on_event: Callable[[socket.socket, int], None]) -> None:
        """Register ``sock`` for ``events`` (selectors' mask), or change its events."""

    def unwatch(self, sock: socket.socket) -> None:
        """Stop waking for ``sock``; nothing when it is not watched."""


class SelectorWatcher:
    """A :class:`Watcher` on the master's selector; ``on_event`` is the key's data."""

    def __init__(self, selector: selectors.BaseSelector) -> None:
        self._selector = selector

    def watch(self, sock: socket.socket, events: int,
              on_event: Callable[[socket.socket, int], None]) -> None:
        """Register ``sock`` for ``events``, or change its events (a closed one: nothing)."""
        try:
            key = self._selector.get_key(sock)
        except KeyError:
            self._selector.register(sock, events, on_event)
            return
        except ValueError:  # the socket is closed
            return
        if key.events != events:
            self._selector.modify(sock, events, key.data)

    def unwatch(self, sock: socket.socket) -> None:
        """Unregister ``sock``; nothing when it is not registered or closed."""
        try:
            self._selector.unregister(sock)
        except (KeyError, ValueError):
            pass


def _nothing(*_args: object) -> None:
    """A hook nobody listens to."""


@dataclasses.dataclass
class PoolHooks:
    """What the master hears from the pool. Each hook is called from the loop."""

    changed: Callable[[], None] = _nothing
    """The table changed (the status file is due)."""
    serving_changed: Callable[[], None] = _nothing
    """A slot got or lost its serving worker (accepting, held clients, readiness)."""
    roll_ended: Callable[[], None] = _nothing
    """A rolling restart finished, or was aborted (``WorkerPool.rolls`` says which)."""
    halt: Callable[[str], None] = _nothing
    """Workers fail to boot again and again: the master should stop, with this reason."""
    stranded: Callable[[bytes, int], None] = _nothing
    """A hand-off (packet, client fd) was queued for a worker that died: route it again."""
    relay: Callable[[Worker, Kind, object], None] = _nothing
    """A worker published a message (``PUBLISH`` or ``PUBLISH_TO``, parsed)."""
    hand_back: Callable[[Worker, int, tuple[str, int], bytes], None] = _nothing
    """A worker handed a connection back: (worker, client fd, address, bytes read)."""
