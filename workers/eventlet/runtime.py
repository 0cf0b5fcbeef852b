"""The eventlet worker runtime: boot in the forked child, then serve until told to stop.

Boot order matters: monkey-patch first, then import the app, give it sids that carry
this worker's tag, install the client manager, report ready, serve.
"""
from __future__ import annotations

import logging
import os
import socket
import time
import warnings
from typing import TYPE_CHECKING, NoReturn

# Eventlet warns at import that it is in maintenance mode; we know (see workers/__init__).
warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
import eventlet  # noqa: E402
import eventlet.hubs  # noqa: E402

from cluster.protocol import sids
from cluster.protocol.frames import Heartbeat, Kind
from cluster.protocol.spec import WorkerSpec

from .. import spread

if TYPE_CHECKING:  # imported in serve(), after monkey-patching
    from .link import ChannelListener, MasterLink

log = logging.getLogger("sticky_cluster.worker")

DRAIN_QUIET = 1.0
"""Seconds without a session or a hand-off after which a draining worker stops taking them."""


def serve(spec: WorkerSpec, sock: socket.socket) -> NoReturn:
    """Boot the worker described by ``spec`` on its channel ``sock`` and serve forever.

    Raises (before reporting ready) when the app cannot be loaded; the caller turns
    that into a boot-failure exit code.
    """
    eventlet.monkey_patch()
    _log_hub_errors()
    from eventlet import wsgi

    from .. import access_log, forwarded, loader, managers
    from ..limits import http_limits
    from ..wsgi_errors import log_errors
    from . import websocket
    from .http import protocol_for
    from .link import ChannelListener, MasterLink
    from .protocol import routing_protocol

    app = loader.load(spec.target, "eventlet")
    sids.install(app.server.eio, spec.tag)
    websocket.install(app.server.eio, spec.websocket_rate)
    listener = ChannelListener(spec.server_address, spec.family)
    link = MasterLink(sock, listener)
    managers.install(app.server, spec, link)
    link.on_drain = lambda: eventlet.spawn(_drain, app.server, link, listener,
                                          spec.graceful_timeout, spec.drain_spread)
    link.start()
    pool = eventlet.GreenPool(spec.worker_connections)
    eventlet.spawn(_heartbeat, link, app.server, pool, listener, spec.heartbeat_interval)
    link.send(Kind.READY)
    log.debug("worker %d (slot %d) serving", os.getpid(), spec.slot)
    protocol = protocol_for(http_limits(spec, app))
    trusted = forwarded.trust_of(spec.forwarded_allow_ips)
    if trusted is not None:
        protocol = forwarded.wsgi_handler(protocol, trusted)
    if spec.hand_back:
        protocol = routing_protocol(spec.tag, link.hand_back, base=protocol,
                                    place_new_sessions=spec.place_new_sessions)
    wsgi.server(listener, access_log.wrap(log_errors(app.wsgi), spec), log_output=False,
                debug=False, protocol=protocol, custom_pool=pool)
    log.info("worker %d (slot %d) drained", os.getpid(), spec.slot)
    logging.shutdown()
    os._exit(0)


def check(target: str) -> str | None:
    """Load ``target`` the way a worker would; return a one-line error or None."""
    eventlet.monkey_patch()
    from ..loader import TargetError, load

    try:
        load(target, "eventlet")
    except TargetError as exc:
        return str(exc)
    return None


def _log_hub_errors() -> None:
    """Log what eventlet's hub would print to standard error: the traceback of an exception
    no green thread caught (an event handler's, run in a green thread of its own), so that
    it goes where the log goes (``--log-file``, ``--log-format json``), as one record."""
    hub = eventlet.hubs.get_hub()

    def logged(*args: object) -> None:
        exc_info = args[-1]
        log.error("worker %d: uncaught error in a green thread", os.getpid(), exc_info=exc_info)

    hub.squelch_timer_exception = logged
    hub.squelch_generic_exception = logged


def _heartbeat(link: MasterLink, server: object, pool: eventlet.GreenPool,
               listener: ChannelListener, interval: float) -> None:
    """Tell the master, every ``interval``, that this worker lives, and its load.

    The load is the Engine.IO sessions (for placement) and the connections open or
    waiting to be served (the master stops placing here at ``--worker-connections``).
    """
    while True:
        eventlet.sleep(interval)
        sessions = len(server.eio.sockets)  # type: ignore[attr-defined]
        connections = pool.running() + listener.waiting()
        link.send(Kind.HEARTBEAT, Heartbeat(sessions, connections).encode())


def _drain(server: object, link: MasterLink, listener: ChannelListener,
           graceful_timeout: float, drain_spread: float) -> None:
    """Serve the open sessions (sid-routed requests still arrive) until they end or time out.

    The worker takes hand-offs until it has had no session for :data:`DRAIN_QUIET`
    seconds (a session's next request may be on its way). Sessions still open at the
    graceful timeout are closed without a goodbye, so that Socket.IO clients reconnect
    (to another worker) by themselves: spread evenly over ``drain_spread`` seconds
    (:mod:`workers.spread`), not all in one instant. Then it closes its listener:
    ``wsgi.server`` returns once the requests in flight end, and the worker exits. (Not
    before: ``wsgi.server`` shuts every websocket at once when its listener closes.)
    """
    sockets = server.eio.sockets  # type: ignore[attr-defined]
    log.info("worker %d draining: %d sessions", os.getpid(), len(sockets))
    deadline = time.monotonic() + graceful_timeout
    while time.monotonic() < deadline and (sockets or link.idle_for() < DRAIN_QUIET):
        eventlet.sleep(0.1)
    spread.close_green(sockets, drain_spread, eventlet.sleep)
    listener.close()
