"""What ``--status-bind`` serves: ``/metrics``, ``/healthz``, ``/status`` and the live page ``/``.

All four are views of one snapshot, :meth:`cluster.Master.facts`, taken at most once per
:data:`CACHE_SECONDS`; each view is rendered once per snapshot. However often scrapers
ask, the master computes and renders a few times a second at most.
``/healthz`` is 200 while at least one worker serves (503 otherwise), for load
balancers and Kubernetes probes. ``/`` is one self-contained HTML file (inline CSS and
JS, no external asset, works offline) that polls ``/status`` and redraws itself.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

from . import metrics
from .status_http import Response

PAGE = Path(__file__).with_name("status_page.html")


def healthz(facts: dict) -> Response:
    """200 ``ok`` while a worker serves; 503 with the reason otherwise (pure)."""
    serving = facts["workers_by_state"].get("serving", 0)
    if serving and not facts["stopping"]:
        return Response(200, "text/plain; charset=utf-8", f"ok: {serving} workers serving\n".encode())
    why = f"{facts['stopping']} stop in progress" if facts["stopping"] else "no worker serves"
    return Response(503, "text/plain; charset=utf-8", f"unavailable: {why}\n".encode())


CACHE_SECONDS = 0.5
"""How long one snapshot of the facts, and what is rendered of it, is served."""


class Snapshot:
    """``facts()`` taken at most once per ``ttl`` seconds, and the views rendered of it.

    :param facts: takes the snapshot.
    :param ttl: seconds a snapshot is served.
    :param clock: the time in seconds (monotonic).
    """

    def __init__(self, facts: Callable[[], dict], ttl: float = CACHE_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._take = facts
        self._ttl = ttl
        self._clock = clock
        self._taken = float("-inf")
        self._facts: dict = {}
        self._views: dict[str, Response] = {}

    def facts(self) -> dict:
        """The current snapshot (a new one once the last is ``ttl`` old)."""
        now = self._clock()
        if now - self._taken >= self._ttl:
            self._facts, self._taken, self._views = self._take(), now, {}
        return self._facts

    def view(self, name: str, render: Callable[[dict], Response]) -> Response:
        """``render(facts)`` of the current snapshot, rendered once per snapshot."""
        facts = self.facts()
        if name not in self._views:
            self._views[name] = render(facts)
        return self._views[name]


def site(facts: Callable[[], dict]) -> Callable[[str], Response]:
    """The ``respond(path)`` function of the status server, over ``facts()``."""
    snapshot = Snapshot(facts)
    render_metrics = metrics.exposition(snapshot.facts)
    views: dict[str, Callable[[dict], Response]] = {
        "/metrics": lambda _facts: Response(200, metrics.CONTENT_TYPE, render_metrics()),
        "/healthz": healthz,
        "/status": lambda facts: Response(200, "application/json", json.dumps(facts).encode()),
    }
    page = PAGE.read_bytes()

    def respond(path: str) -> Response:
        if path in views:
            return snapshot.view(path, views[path])
        if path in ("/", "/index.html"):
            return Response(200, "text/html; charset=utf-8", page)
        return Response(404, "text/plain; charset=utf-8", b"404 Not Found\n")

    return respond
