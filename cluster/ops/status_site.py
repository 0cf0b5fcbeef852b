"""What ``--status-bind`` serves: ``/metrics``, ``/healthz``, ``/status`` and the live page ``/``.

All four are views of one snapshot of :meth:`cluster.Master.facts`: the requests the
status server accepts together (scrapers that connect at once) share one, each view of it
rendered once (:class:`Snapshot`), so a crowd of scrapers costs the master a few renders.
``/healthz`` is 200 while at least one worker serves (503 otherwise), for load
balancers and Kubernetes probes. ``/`` is one self-contained HTML file (inline CSS and
JS, no external asset, works offline) that polls ``/status`` and redraws itself.
"""
from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Callable, Iterator

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


class Snapshot:
    """The facts, taken once for the requests served together (:meth:`held`), fresh otherwise.

    Scrapers that connect at once are answered from one snapshot, each view of it rendered
    once; a request alone gets the facts as they are. No answer is older than the loop
    turn that serves it.

    :param facts: takes the snapshot.
    """

    def __init__(self, facts: Callable[[], dict]) -> None:
        self._take = facts
        self._held = False
        self._facts: dict | None = None
        self._views: dict[str, Response] = {}

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Within the block, every request shares one snapshot (taken at the first)."""
        self._held = True
        try:
            yield
        finally:
            self._held, self._facts, self._views = False, None, {}

    def facts(self) -> dict:
        """The shared snapshot within :meth:`held`, else a new one."""
        if self._facts is None or not self._held:
            self._facts, self._views = self._take(), {}
        return self._facts

    def view(self, name: str, render: Callable[[dict], Response]) -> Response:
        """``render(facts)`` of the snapshot, rendered once per snapshot."""
        facts = self.facts()
        if name not in self._views:
            self._views[name] = render(facts)
        return self._views[name]


def site(facts: Callable[[], dict]) -> tuple[Callable[[str], Response], Snapshot]:
    """The ``respond(path)`` function of the status server over ``facts()``, and the
    snapshot it answers from (the server holds it while it answers a batch)."""
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

    return respond, snapshot
