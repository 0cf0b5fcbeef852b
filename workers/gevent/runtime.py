"""The gevent worker runtime: the shared boot sequence (:mod:`workers.boot`) with
``gevent.pywsgi`` plugged in, for ``socketio.Server(async_mode="gevent")`` and Flask-SocketIO.

Monkey-patching comes first, before the app is imported. Each handed-over socket is served
by ``gevent.pywsgi`` (``WSGIServer.handle`` in a greenlet of a pool of
``--worker-connections``; no listener in the worker) with :mod:`workers.gevent.http`'s
handler, which applies the worker's HTTP limits; under ``--route sid`` with
:mod:`workers.gevent.protocol`'s handler on top, which hands a request for another worker's
session back to the master. Websockets are simple-websocket's with the worker's websocket
limits (:mod:`workers.simple_websocket_limits`), whether gevent-websocket is installed or not (its
messages cannot be bounded). A socket handed over while the pool is full is answered ``503``
(the heartbeat has told the master, which places new clients on the other workers).
Heartbeats come from a greenlet, so a worker whose hub is blocked is seen and killed.
"""
from __future__ import annotations

import functools
import logging
import os
import socket
import warnings
from typing import TYPE_CHECKING, Any, Callable, NoReturn

from cluster.protocol.frames import Heartbeat
from cluster.protocol.spec import WorkerSpec

from ..boot import BlockingRuntime

if TYPE_CHECKING:  # imported in open(), after monkey-patching
    from .link import GeventMasterLink

log = logging.getLogger("sticky_cluster.worker")


class GeventRuntime(BlockingRuntime):
    """``gevent.pywsgi`` over the hand-offs, each in a greenlet of a bounded pool."""

    name = "gevent"

    warm_modules = ("gevent.pool", "gevent.pywsgi", "engineio.async_drivers.gevent",
                    "workers.green_intake", "workers.wsgi_errors",
                    "workers.simple_websocket_limits", "workers.gevent.http",
                    "workers.gevent.link", "workers.gevent.protocol")

    @classmethod
    def patch(cls) -> None:
        """``monkey.patch_all()``."""
        from gevent import monkey

        # The master imported ssl (and more) before it forked us; patching now is still right.
        warnings.filterwarnings("ignore", category=monkey.MonkeyPatchWarning)
        monkey.patch_all()

    @classmethod
    def own_loop(cls) -> None:
        """Log what the hub would print of an uncaught error. (The hub is this process's
        own already: gevent's ``fork``, patched in, renews its loop in the child.)"""
        _log_hub_errors()

    def open(self) -> GeventMasterLink:
        """Bound the websockets; make the pool, the server and the link that feeds it."""
        import engineio.socket
        import gevent
        import gevent.event
        import gevent.pool
        from gevent import pywsgi

        from .. import access_log, forwarded, pings, simple_websocket_limits
        from ..green_intake import GreenIntake
        from ..limits import REQUEST_LINE_LIMIT, http_limits
        from ..wsgi_errors import log_errors
        from .http import handler_for
        from .link import GeventMasterLink
        from .protocol import routing_handler

        spec, app = self.spec, self.app
        simple_websocket_limits.install(app.server.eio, spec.websocket_rate,
                                        spec.websocket_deflate)
        pings.install(engineio.socket.Socket, _call_later(gevent.get_hub().loop),
                      pings.through_send)
        pywsgi.MAX_REQUEST_LINE = REQUEST_LINE_LIMIT
        self.pool = gevent.pool.Pool(spec.worker_connections)
        server = pywsgi.WSGIServer(_Listener(spec), access_log.wrap(log_errors(app.wsgi), spec),
                                   spawn=self.pool, log=None, error_log=log,
                                   handler_class=handler_for(http_limits(spec, app)),
                                   environ=_server_environ(spec))
        refusals = gevent.pool.Pool(spec.worker_connections)
        intake = GreenIntake(functools.partial(self.pool.spawn, _handle, server),
                             lambda: not self.pool.full(),
                             (refusals.spawn, lambda: not refusals.full()),
                             gevent.Timeout, spec.worker_connections)
        link = GeventMasterLink(self.sock, intake.take)
        if spec.hand_back:
            server.handler_class = routing_handler(spec.owner, link.hand_back,
                                                   base=server.handler_class,
                                                   place_new_sessions=spec.place_new_sessions)
        trusted = forwarded.trust_of(spec.forwarded_allow_ips)
        if trusted is not None:
            server.handler_class = forwarded.wsgi_handler(server.handler_class, trusted)
        self.drained = gevent.event.Event()
        return link

    def load(self) -> Heartbeat:
        """The sessions, and the greenlets serving a connection."""
        return Heartbeat(len(self.app.server.eio.sockets), len(self.pool))

    def busy(self) -> bool:
        """A connection is still served."""
        return len(self.pool) > 0

    def spawn(self, function: Callable[[], Any], name: str) -> None:
        """Run ``function`` in a greenlet."""
        import gevent

        gevent.spawn(function)

    def sleep(self, seconds: float) -> None:
        """Sleep in this greenlet."""
        import gevent

        gevent.sleep(seconds)

    def wait(self) -> None:
        """The pool serves in greenlets of its own: wait for the end of the drain."""
        self.drained.wait()

    def stop(self) -> None:
        """Kill the greenlets still serving (a second at most), then end :meth:`wait`."""
        self.pool.kill(timeout=1)
        self.drained.set()


def _log_hub_errors() -> None:
    """Log what gevent's hub would print to standard error: the traceback of an exception no
    greenlet caught (an event handler's, run in a greenlet of its own), so that it goes where
    the log goes (``--log-file``, ``--log-format json``), as one record. The hub still decides
    what is an error (``NOT_ERROR``) and what ends the worker (``SYSTEM_ERROR``)."""
    import gevent

    def logged(context: object, kind: type, value: BaseException | None, tb: Any) -> None:
        value = kind() if value is None else value
        log.error("worker %d: uncaught error in a greenlet", os.getpid(),
                  exc_info=(kind, value, tb or value.__traceback__))

    gevent.get_hub().print_exception = logged


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


def _handle(server: Any, client: socket.socket, address: tuple[str, int], preface: bytes) -> None:
    """Serve one handed-over client; a resumed one (``preface``: the bytes read before) by
    the routing handler, which serves those first."""
    if preface:
        server.handler_class(client, address, server, preface).handle()
    else:
        server.handle(client, address)


def _call_later(loop: Any) -> Callable[..., None]:
    """``call_later(seconds, function, *args)`` on the gevent hub's ``loop`` (a started timer
    keeps itself until it fires)."""

    def call_later(seconds: float, function: Callable[..., Any], *args: Any) -> None:
        loop.timer(seconds).start(function, *args)

    return call_later
