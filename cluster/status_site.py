"""What ``--status-bind`` serves: ``/metrics``, ``/healthz``, ``/status`` and the live page ``/``.

All four are views of one snapshot, :meth:`cluster.Master.facts`, taken per request.
``/healthz`` is 200 while at least one worker serves (503 otherwise), for load
balancers and Kubernetes probes. ``/`` is one self-contained HTML file (inline CSS and
JS, no external asset, works offline) that polls ``/status`` and redraws itself.
"""
from __future__ import annotations

import json
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


def site(facts: Callable[[], dict]) -> Callable[[str], Response]:
    """The ``respond(path)`` function of the status server, over ``facts()``."""
    render_metrics = metrics.exposition(facts)
    page = PAGE.read_bytes()

    def respond(path: str) -> Response:
        if path == "/metrics":
            return Response(200, metrics.CONTENT_TYPE, render_metrics())
        if path == "/healthz":
            return healthz(facts())
        if path == "/status":
            return Response(200, "application/json", json.dumps(facts()).encode())
        if path in ("/", "/index.html"):
            return Response(200, "text/html; charset=utf-8", page)
        return Response(404, "text/plain; charset=utf-8", b"404 Not Found\n")

    return respond
