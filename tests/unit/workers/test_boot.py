"""The drain's policy of the boot sequence (:mod:`workers.boot`), on a runtime of just enough
parts. That every runtime resolves to a class that implements the contract, each imported in
a process of its own: tests/e2e/test_boot.py.
"""
from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from cluster.protocol.frames import Heartbeat
from cluster.protocol.spec import WorkerSpec
from workers.boot import DRAIN_QUIET, DRAIN_TICK, Runtime
from workers.inbox import Inbox


class Drained(Runtime):
    """Just enough of a runtime to run :meth:`~workers.boot.Runtime.drain_waits`."""

    name = "test"

    def __init__(self, sessions: dict[str, Any], in_flight: int) -> None:
        spec = WorkerSpec(target="app:sio", slot=0, tag=1, adapter=None, channel="socketio",
                          worker_connections=10, heartbeat_interval=1.0, graceful_timeout=5.0,
                          drain_spread=0.0, header_timeout=5.0, keepalive_timeout=5.0,
                          websocket_rate=1_000_000, server_address=("127.0.0.1", 0), family=2)
        super().__init__(spec, None)  # type: ignore[arg-type]
        self.app = SimpleNamespace(server=SimpleNamespace(eio=SimpleNamespace(sockets=sessions)))
        self.link = Inbox(lambda client, address, preface: None)  # type: ignore[assignment]
        self.in_flight = in_flight

    def open(self) -> Any:
        raise NotImplementedError

    def load(self) -> Heartbeat:
        return Heartbeat(len(self.app.server.eio.sockets))

    def busy(self) -> bool:
        return self.in_flight > 0

    def run(self) -> None:
        raise NotImplementedError

    def on_drain(self) -> None:
        raise NotImplementedError

    def start_heartbeats(self) -> None:
        raise NotImplementedError


def test_a_drain_waits_for_the_sessions_then_for_what_is_in_flight() -> None:
    sessions = {"sid": object()}
    runtime = Drained(sessions, in_flight=1)
    runtime.link.last_client -= DRAIN_QUIET  # type: ignore[attr-defined]
    waits = runtime.drain_waits(deadline=float("inf"))
    assert next(waits) == DRAIN_TICK and not runtime.link.closed
    sessions.clear()
    assert next(waits) == DRAIN_TICK and runtime.link.closed  # hand-offs are closed from now
    runtime.in_flight = 0
    assert list(waits) == []


def test_a_drain_keeps_taking_hand_offs_for_a_quiet_while_after_the_last_session() -> None:
    runtime = Drained({}, in_flight=0)
    waits = runtime.drain_waits(deadline=float("inf"))
    assert next(waits) == DRAIN_TICK and not runtime.link.closed  # a hand-off just came
    runtime.link.last_client -= DRAIN_QUIET  # type: ignore[attr-defined]
    assert list(waits) == [] and runtime.link.closed


def test_a_drain_past_its_deadline_waits_no_more() -> None:
    runtime = Drained({"sid": object()}, in_flight=3)
    assert list(runtime.drain_waits(deadline=0.0)) == [] and runtime.link.closed
