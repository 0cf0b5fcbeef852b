"""A Socket.IO app that counts its own events with prometheus_client, on every worker.

Each worker increments the counter in its own process; prometheus_client's multiprocess
mode writes every worker's values to files in ``PROMETHEUS_MULTIPROC_DIR`` (set by
``examples/prometheus_config.py``), and ``/metrics``, served by whichever worker the
request reaches, adds them all up with a ``MultiProcessCollector``.

    sticky-cluster run examples.prometheus_app:app -c examples/prometheus_config.py
    curl http://127.0.0.1:5000/metrics
"""
import os

import socketio
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from prometheus_client import multiprocess

sio = socketio.Server(async_mode="eventlet")

EVENTS = Counter("app_events_total", "Socket.IO events the app handled", ["event"])


@sio.event
def hello(sid, data=None):
    """Count the event; answer which worker process served it."""
    EVENTS.labels("hello").inc()
    return os.getpid()


def metrics(environ, start_response):
    """``/metrics``: every worker's counters, dead workers' included, added up."""
    if environ.get("PATH_INFO") != "/metrics":
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    body = generate_latest(registry)
    start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST),
                              ("Content-Length", str(len(body)))])
    return [body]


app = socketio.WSGIApp(sio, metrics)
