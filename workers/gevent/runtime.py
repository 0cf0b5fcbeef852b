"""The gevent worker runtime: ``socketio.Server(async_mode="gevent")`` and Flask-SocketIO apps.

Boot order as in the eventlet runtime: monkey-patch first, then import the app, give
it sids that carry this worker's tag, install the client manager, report ready,
serve. Each handed-over socket is served by ``gevent.pywsgi`` (``WSGIServer.handle``
in a greenlet of a pool of ``--worker-connections``; no listener in the worker) with
:mod:`workers.gevent.http`'s handler, which applies the worker's HTTP limits; under
``--route sid`` with :mod:`workers.gevent.protocol`'s handler on top, which hands a
request for another worker's session back to the master. Websockets are
simple-websocket's with the worker's websocket limits
(:mod:`workers.gevent.websocket`), whether gevent-websocket is installed or not
(its messages cannot be bounded). A socket handed over while the pool is full is
answered ``503`` (the heartbeat has told the master, which places new clients on the
other workers). Heartbeats come from a greenlet, so a worker whose hub is blocked is
seen and killed.
"""
from __future__ import annotations

import logging
import os
import socket
import time
import warnings
from typing import Any, NoReturn

from cluster.protocol import sids
from cluster.protocol.frames import Heartbeat, Kind
from cluster.protocol.spec import WorkerSpec

from .. import spread

log = logging.getLogger("sticky_cluster.worker")

DRAIN_QUIET = 1.0
"""Seconds without a session or a hand-off after which a draining worker stops taking them."""


def serve(spec: WorkerSpec, sock: socket.socket) -> NoReturn:
    """Boot the worker described by ``spec`` on its channel ``sock`` and serve until drained.

    Raises (before reporting ready) when the app cannot be loaded; the caller turns
    that into a boot-failure exit code.
    """
    _patch()
    import gevent
    import gevent.event
    import gevent.pool
    from gevent import pywsgi

    from .. import access_log, forwarded, loader, managers
    from ..limits import REQUEST_LINE_LIMIT, http_limits
    from ..wsgi_errors import log_errors
    from . import websocket
    from .http import handler_for
    from .link import GeventMasterLink
    from .protocol import routing_handler

    app = loader.load(spec.target, "gevent")
    sids.install(app.server.eio, spec.tag)
    websocket.install(app.server.eio, spec.websocket_rate)
    pywsgi.MAX_REQUEST_LINE = REQUEST_LINE_LIMIT
    pool = gevent.pool.Pool(spec.worker_connections)
    server = pywsgi.WSGIServer(_Listener(spec), access_log.wrap(log_errors(app.wsgi), spec),
                               spawn=pool, log=None, error_log=log,
                               handler_class=handler_for(http_limits(spec, app)),
                               environ=_server_environ(spec))
    link = GeventMasterLink(sock, _Intake(server, pool, spec.worker_connections).take)
    if spec.hand_back:
        server.handler_class = routing_handler(spec.tag, link.hand_back, base=server.handler_class,
                                               place_new_sessions=spec.place_new_sessions)
    trusted = forwarded.trust_of(spec.forwarded_allow_ips)
    if trusted is not None:
        server.handler_class = forwarded.wsgi_handler(server.handler_class, trusted)
    managers.install(app.server, spec, link)
    drained = gevent.event.Event()
    link.on_drain = lambda: gevent.spawn(_drain, app.server, link, pool, spec.graceful_timeout,
                                         spec.drain_spread, drained)
    link.start()
    gevent.spawn(_heartbeat, link, app.server, pool, spec.heartbeat_interval)
    link.send(Kind.READY)
    log.debug("worker %d (slot %d) serving (gevent)", os.getpid(), spec.slot)
    drained.wait()
    log.info("worker %d (slot %d) drained", os.getpid(), spec.slot)
    logging.shutdown()
    os._exit(0)


def check(target: str) -> str | None:
    """Load ``target`` the way a worker would; return a one-line error or None."""
    _patch()
    from ..loader import TargetError, load

    try:
        load(target, "gevent")
    except TargetError as exc:
        return str(exc)
    return None


def _patch() -> None:
    from gevent import monkey

    # The master imported ssl (and more) before it forked us; patching now is still right.
    warnings.filterwarnings("ignore", category=monkey.MonkeyPatchWarning)
    monkey.patch_all()


class _Listener:
    """What ``WSGIServer`` takes for its listening socket; never accepted from."""

    def __init__(self, spec: WorkerSpec) -> None:
        self.family = spec.family
        self._address = spec.server_address

    def getsockname(self) -> tuple[str, int] | str:
        return self._address

    def accept(self) -> NoReturn:
        raise OSError("clients are handed over by the master")


def _server_environ(spec: WorkerSpec) -> dict[str, str]:
    address = spec.server_address
    if isinstance(address, tuple):
        return {"SERVER_NAME": str(address[0]), "SERVER_PORT": str(address[1])}
    return {"SERVER_NAME": "", "SERVER_PORT": ""}


class _Intake:
    """Takes each handed-over client: served in the pool, or, while the pool is full,
    answered ``503`` (by at most as many greenlets again; past that, closed at once).

    :param server: the ``WSGIServer`` that serves the clients.
    :param pool: its pool of ``--worker-connections`` greenlets.
    :param limit: ``--worker-connections``.
    """

    def __init__(self, server: Any, pool: Any, limit: int) -> None:
        import gevent.pool

        self._server = server
        self._pool = pool
        self._limit = limit
        self._refusals = gevent.pool.Pool(limit)

    def take(self, client: socket.socket, address: tuple[str, int], preface: bytes) -> None:
        """Serve ``client`` (``preface``: the bytes another worker read from it), or refuse it."""
        from .http import refuse

        if not self._pool.full():
            self._pool.spawn(_handle, self._server, client, address, preface)
            return
        log.warning("worker %d is full (--worker-connections %d): a connection gets a 503",
                    os.getpid(), self._limit)
        if self._refusals.full():
            client.close()
        else:
            self._refusals.spawn(refuse, client, preface)


def _handle(server: Any, client: socket.socket, address: tuple[str, int], preface: bytes) -> None:
    """Serve one handed-over client; a resumed one (``preface``: the bytes read before) by
    the routing handler, which serves those first."""
    if preface:
        server.handler_class(client, address, server, preface).handle()
    else:
        server.handle(client, address)


def _heartbeat(link: Any, server: Any, pool: Any, interval: float) -> None:
    import gevent

    while True:
        gevent.sleep(interval)
        link.send(Kind.HEARTBEAT, Heartbeat(len(server.eio.sockets), len(pool)).encode())


def _drain(server: Any, link: Any, pool: Any, graceful_timeout: float, drain_spread: float,
           drained: Any) -> None:
    """Serve the open sessions (sid-routed requests still arrive) until they end or time out.

    As in the eventlet runtime: hand-offs are taken until there has been no session for
    :data:`DRAIN_QUIET` seconds, then none; the connections still open then get until
    the graceful timeout; sessions left are closed without a goodbye, spread evenly over
    ``drain_spread`` seconds (:mod:`workers.spread`).
    """
    import gevent

    sockets = server.eio.sockets
    log.info("worker %d draining: %d sessions", os.getpid(), len(sockets))
    deadline = time.monotonic() + graceful_timeout
    while time.monotonic() < deadline and (sockets or link.idle_for() < DRAIN_QUIET):
        gevent.sleep(0.1)
    link.closed = True
    while time.monotonic() < deadline and len(pool):
        gevent.sleep(0.1)
    spread.close_green(sockets, drain_spread, gevent.sleep)
    pool.kill(timeout=1)
    drained.set()
