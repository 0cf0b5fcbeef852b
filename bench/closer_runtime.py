"""The worker runtime of :mod:`bench.closer`: an eventlet worker that closes what it is handed.

Imported only in a forked worker (by its path in :data:`cluster.protocol.spec.RUNTIMES`),
never in the master.
"""
from __future__ import annotations

from workers.eventlet.runtime import EventletRuntime


class CloserRuntime(EventletRuntime):
    """An eventlet worker (boot, link, heartbeats, drain) whose server only closes."""

    def wait(self) -> None:
        """Close each handed-off client as it comes, until the listener closes."""
        try:
            while True:
                client, _address = self.listener.accept()
                client.close()
        except OSError:
            return
