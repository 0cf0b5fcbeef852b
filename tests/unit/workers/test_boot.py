"""The boot sequence's contract (:mod:`workers.boot`) and the drain's policy.

Every runtime of :data:`cluster.protocol.spec.RUNTIMES` resolves to a class that implements
:class:`workers.boot.Runtime`. Each is imported in a subprocess of its own: a green runtime
must not meet another one in a process, and importing a runtime's class must patch nothing
(that is :meth:`~workers.boot.Runtime.patch`'s job, in the forked worker).
"""
from __future__ import annotations

import json
import subprocess
import sys
from types import SimpleNamespace
from typing import Any

import pytest

from cluster.protocol.frames import Heartbeat
from cluster.protocol.spec import RUNTIMES, WorkerSpec
from tests.support.paths import ROOT
from workers.boot import DRAIN_QUIET, DRAIN_TICK, Runtime
from workers.inbox import Inbox

INSPECT = """
import inspect, json, socket, sys
from cluster.protocol.spec import runtime_class
from workers.boot import Runtime
runtime = runtime_class(sys.argv[1])
print(json.dumps({
    "runtime": isinstance(runtime, type) and issubclass(runtime, Runtime),
    "abstract": sorted(getattr(runtime, "__abstractmethods__", ())),
    "name": getattr(runtime, "name", None),
    "patched": socket.socket.__module__ != "socket",
    "green": sorted({"eventlet", "gevent"} & set(sys.modules)),
}))
"""

GREEN_LIBRARY = {"eventlet": ["eventlet"], "gevent": [], "asyncio": [], "threading": []}
"""The green library importing a runtime's class may load (gevent's loads it at boot)."""


@pytest.mark.parametrize("name", sorted(RUNTIMES))
def test_every_runtime_resolves_to_a_class_that_implements_the_contract(name: str) -> None:
    found = subprocess.run([sys.executable, "-c", INSPECT, name], cwd=ROOT, check=True,
                           capture_output=True, text=True).stdout
    assert json.loads(found) == {"runtime": True, "abstract": [], "name": name,
                                 "patched": False, "green": GREEN_LIBRARY[name]}


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
