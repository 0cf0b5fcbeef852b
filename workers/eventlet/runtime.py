"""The eventlet worker runtime: the shared boot sequence (:mod:`workers.boot`) with
``eventlet.wsgi`` plugged in.

Monkey-patching comes first, before the app is imported. The handed-over sockets go to a
stand-in listener that ``eventlet.wsgi.server`` accepts from (:mod:`.link`), in a green
pool of ``--worker-connections``; one handed over past that is answered ``503``
(:mod:`workers.green_intake`); heartbeats and the drain run in green threads, so a
worker whose hub is blocked is seen and killed.
"""
from __future__ import annotations

import logging
import os
import warnings
from typing import TYPE_CHECKING, Any, Callable

# Eventlet warns at import that it is in maintenance mode; we know (see workers/__init__).
warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
import eventlet  # noqa: E402
import eventlet.hubs  # noqa: E402

from cluster.protocol.frames import Heartbeat  # noqa: E402

from ..boot import BlockingRuntime  # noqa: E402

if TYPE_CHECKING:  # imported in open(), after monkey-patching
    from .link import ChannelListener, MasterLink

log = logging.getLogger("sticky_cluster.worker")


class EventletRuntime(BlockingRuntime):
    """``eventlet.wsgi.server`` over the hand-offs, in a green pool."""

    name = "eventlet"
    warm_modules = ("eventlet.wsgi", "engineio.async_drivers.eventlet", "workers.green_intake",
                    "workers.wsgi_errors", "workers.eventlet.http", "workers.eventlet.link",
                    "workers.eventlet.protocol", "workers.eventlet.websocket")

    @classmethod
    def patch(cls) -> None:
        """Monkey-patch."""
        eventlet.monkey_patch()

    @classmethod
    def own_loop(cls) -> None:
        """A hub of this process's own: the one ``monkey_patch`` made in the workers'
        template would share its epoll instance with every worker forked from it. Log what
        the hub would print of an uncaught error."""
        eventlet.hubs.use_hub()
        _log_hub_errors()

    def open(self) -> MasterLink:
        """Bound the websockets; make the listener, its link and the HTTP protocol."""
        import engineio.socket

        from .. import forwarded, pings
        from ..green_intake import GreenIntake
        from ..limits import http_limits
        from . import packet_queue, websocket
        from .http import protocol_for
        from .link import ChannelListener, MasterLink
        from .protocol import routing_protocol

        spec = self.spec
        websocket.install(self.app.server.eio, spec.websocket_rate, spec.websocket_deflate)
        packet_queue.install(self.app.server.eio)
        pings.install(engineio.socket.Socket, eventlet.hubs.get_hub().schedule_call_global,
                      pings.through_send)
        self.listener: ChannelListener = ChannelListener(spec.server_address, spec.family)
        self.pool = eventlet.GreenPool(spec.worker_connections)
        refusals = eventlet.GreenPool(spec.worker_connections)
        # wsgi.server takes a queued client only once the pool has a free green thread:
        # those queued count against the limit as those served do
        intake = GreenIntake(self.listener.put_client,
                             lambda: self.pool.free() > self.listener.waiting(),
                             (refusals.spawn_n, lambda: refusals.free() > 0),
                             eventlet.Timeout, spec.worker_connections)
        link = MasterLink(self.sock, intake.take)
        protocol = protocol_for(http_limits(spec, self.app))
        trusted = forwarded.trust_of(spec.forwarded_allow_ips)
        if trusted is not None:
            protocol = forwarded.wsgi_handler(protocol, trusted)
        if spec.hand_back:
            protocol = routing_protocol(spec.owner, link.hand_back, base=protocol,
                                        place_new_sessions=spec.place_new_sessions)
        self.protocol = protocol
        return link

    def load(self) -> Heartbeat:
        """The sessions, and the connections open or waiting to be served."""
        return Heartbeat(len(self.app.server.eio.sockets),
                         self.pool.running() + self.listener.waiting())

    def busy(self) -> bool:
        """Nothing to wait for here: ``wsgi.server`` lets the requests in flight end
        after :meth:`stop` closes its listener."""
        return False

    def stop_taking(self) -> None:
        """Keep taking hand-offs: the listener takes them until :meth:`stop` closes it."""

    def spawn(self, function: Callable[[], Any], name: str) -> None:
        """Run ``function`` in a green thread."""
        eventlet.spawn(function)

    def sleep(self, seconds: float) -> None:
        """Sleep in this green thread."""
        eventlet.sleep(seconds)

    def wait(self) -> None:
        """Serve with ``wsgi.server`` until the listener closes and the requests in flight
        end. (Closing the listener any earlier would shut every websocket at once.)"""
        from eventlet import wsgi

        from .. import access_log
        from ..wsgi_errors import log_errors

        wsgi.server(self.listener, access_log.wrap(log_errors(self.app.wsgi), self.spec),
                    log_output=False, debug=False, protocol=self.protocol,
                    custom_pool=self.pool)

    def stop(self) -> None:
        """Close the listener: ``wsgi.server`` returns once the requests in flight end."""
        self.listener.close()


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
