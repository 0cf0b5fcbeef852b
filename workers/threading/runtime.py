"""The threading worker runtime: ``socketio.Server(async_mode="threading")``, Flask-SocketIO
in threading mode, or a ``socketio.WSGIApp`` over such a Server.

No monkey-patching: the app runs on real threads, as under ``gunicorn -k gthread``.
Boot order as in the other runtimes: import the app, give it sids that carry this
worker's tag, guard its websockets, install the client manager (python-socketio's sync
managers, whose listeners are threads), report ready, serve. The server
(:mod:`workers.threading.server`) reads the handed-over sockets with one poller thread
and runs requests on ``--threads`` threads; websockets are simple-websocket's
(:mod:`workers.threading.websocket`). The poller also sends the heartbeats: a worker
whose poller is stuck, or whose interpreter is held by code that keeps the GIL, is seen
and killed; one whose threads are all busy is reported *full*.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Any, NoReturn

from cluster.protocol import sids
from cluster.protocol.frames import Heartbeat, Kind
from cluster.protocol.spec import WorkerSpec

from .. import spread

log = logging.getLogger("sticky_cluster.worker")

DRAIN_QUIET = 1.0
"""Seconds without a session or a hand-off after which a draining worker stops taking them."""

DEFAULT_THREADS = 1000
"""``--threads`` when not given. A websocket holds one pool thread for its whole life
(and simple-websocket and Engine.IO start three more of their own: reader, writer,
pings), so the pool is the most clients one worker serves at once: gunicorn's
documented 100 would cap a worker at 100 websockets. An idle websocket costs about
50 KB (measured, mostly its threads' stacks), so 1,000 stay near 50 MB a worker; a long
poll or a short request frees its thread when it ends."""


def serve(spec: WorkerSpec, sock: socket.socket) -> NoReturn:
    """Boot the worker described by ``spec`` on its channel ``sock`` and serve until drained.

    Raises (before reporting ready) when the app cannot be loaded; the caller turns
    that into a boot-failure exit code.
    """
    from .. import access_log, forwarded, loader, managers
    from ..limits import http_limits
    from ..wsgi_errors import log_errors
    from . import websocket
    from .link import ThreadMasterLink
    from .server import Server

    app = loader.load(spec.target, "threading")
    sids.install(app.server.eio, spec.tag)
    websocket.install(app.server.eio, spec.websocket_rate)
    threads = spec.threads or DEFAULT_THREADS
    trusted = forwarded.trust_of(spec.forwarded_allow_ips)
    wsgi = app.wsgi if trusted is None else forwarded.wsgi_app(app.wsgi, trusted)
    server = Server(access_log.wrap(log_errors(wsgi), spec), http_limits(spec, app), threads,
                    _base_environ(spec), spec.tag)
    link = ThreadMasterLink(sock, server.add)
    if spec.hand_back:
        server.hand_back = link.hand_back
        server.place_new_sessions = spec.place_new_sessions
    managers.install(app.server, spec, link)
    drained = threading.Event()
    link.on_drain = lambda: threading.Thread(
        target=_drain, args=(app.server, link, server, spec.graceful_timeout,
                              spec.drain_spread, drained),
        name="sticky-drain", daemon=True).start()
    link.start()
    link.send(Kind.READY)
    log.debug("worker %d (slot %d) serving (threading, %d threads)", os.getpid(), spec.slot,
              threads)

    def heartbeat() -> None:
        beat = Heartbeat(len(app.server.eio.sockets), server.connections, int(server.pool.full))
        link.send(Kind.HEARTBEAT, beat.encode())

    server.run(heartbeat, spec.heartbeat_interval, stop=drained.is_set)
    server.close_idle()
    log.info("worker %d (slot %d) drained", os.getpid(), spec.slot)
    logging.shutdown()
    os._exit(0)


def check(target: str) -> str | None:
    """Load ``target`` the way a worker would; return a one-line error or None."""
    from ..loader import TargetError, load

    try:
        load(target, "threading")
    except TargetError as exc:
        return str(exc)
    return None


def _base_environ(spec: WorkerSpec) -> dict[str, Any]:
    """The WSGI keys every request of this worker shares."""
    address = spec.server_address
    name, port = (str(address[0]), str(address[1])) if isinstance(address, tuple) else ("", "")
    return {"SERVER_NAME": name, "SERVER_PORT": port, "SERVER_SOFTWARE": "sticky-cluster",
            "wsgi.version": (1, 0), "wsgi.url_scheme": "http", "wsgi.multithread": True,
            "wsgi.multiprocess": True, "wsgi.run_once": False, "wsgi.input_terminated": True}


def _drain(server: Any, link: Any, http: Any, graceful_timeout: float, drain_spread: float,
           drained: threading.Event) -> None:
    """Serve the open sessions (sid-routed requests still arrive) until they end or time out.

    As in the other runtimes: hand-offs are taken until there has been no session for
    :data:`DRAIN_QUIET` seconds, then none; the requests still running then get until
    the graceful timeout; sessions left are closed without a goodbye, spread evenly over
    ``drain_spread`` seconds (:mod:`workers.spread`), so that their clients reconnect (to
    another worker) by themselves, not all in one instant.
    """
    sockets = server.eio.sockets
    log.info("worker %d draining: %d sessions", os.getpid(), len(sockets))
    deadline = time.monotonic() + graceful_timeout
    while time.monotonic() < deadline and (sockets or link.idle_for() < DRAIN_QUIET):
        time.sleep(0.1)
    link.closed = True
    while time.monotonic() < deadline and (http.pool.busy or http.pool.waiting):
        time.sleep(0.1)
    spread.close_green(sockets, drain_spread, time.sleep)
    drained.set()
