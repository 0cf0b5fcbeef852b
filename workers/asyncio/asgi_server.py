"""ASGI apps on handed-over sockets, with uvicorn's own HTTP and websocket protocols.

There is no listener in the worker: each socket the master hands over becomes a
connection through ``loop.connect_accepted_socket`` with the protocol class uvicorn
itself would pick (httptools or h11; websockets or wsproto), built the way
``uvicorn.Server`` builds it: one :class:`uvicorn.Config`, one ``ServerState``, the
app's lifespan run at start and at stop. uvicorn's logging set-up and access log
stay off: the worker logs as the cluster does, and writes its own access log
(:mod:`workers.asyncio.access_log`).

The worker's limits go into uvicorn's settings where it has them: ``limit_concurrency``
(``--worker-connections``), ``timeout_keep_alive``, ``ws_max_size`` (python-socketio's
``max_http_buffer_size``: counted over a message's fragments, and the bound its
permessage-deflate decoder inflates to), ``h11_max_incomplete_event_size``; the others
are applied in front of uvicorn's protocol (:mod:`workers.asyncio.guard`).
Per-message deflate, with ``--websocket-deflate``, is on with the websockets
implementations (they inflate at most ``ws_max_size``; websockets-sansio with
:mod:`workers.asyncio.uvicorn_deflate`'s threshold); with wsproto, which inflates a
whole frame at once, it stays off.
"""
from __future__ import annotations

import asyncio
import email.utils
import functools
import socket
import time
from typing import Any

from uvicorn.config import Config
from uvicorn.server import ServerState

from ..access_log import LineWriter
from ..limits import HttpLimits
from . import uvicorn_deflate
from .access_log import AsgiAccessLog
from .guard import ConnectionGuard
from .peer import connect
from .protocol import Routing
from .request_bounds import HEAD_LIMIT


class BootError(Exception):
    """The app cannot start (its lifespan startup failed); one line for the user."""


class AsgiConnections:
    """Serves an ASGI app on the sockets handed to it.

    :param app: the ASGI application.
    :param worker_connections: the most connections served at once (more get a 503).
    :param limits: the worker's HTTP limits.
    :param websocket_rate: bytes per second one websocket may send on average.
    :param websocket_deflate: grant permessage-deflate to a client that offers it (where
                              uvicorn's websocket implementation bounds the inflate).
    :param access_log: writes the access log, if there is one.
    """

    def __init__(self, app: Any, worker_connections: int, limits: HttpLimits,
                 websocket_rate: float, websocket_deflate: bool,
                 access_log: LineWriter | None = None) -> None:
        served = app if access_log is None else AsgiAccessLog(app, access_log)
        # uvicorn counts the connection asking among the open ones: N+1 serves N at once.
        self.config = Config(served, log_config=None, log_level="warning", access_log=False,
                             proxy_headers=False, lifespan="auto",
                             limit_concurrency=worker_connections + 1,
                             timeout_keep_alive=limits.keepalive_timeout,  # type: ignore[arg-type]
                             ws_max_size=limits.max_body,
                             h11_max_incomplete_event_size=HEAD_LIMIT)
        self.config.load()
        self.config.ws_per_message_deflate = (websocket_deflate
                                              and deflate_is_bounded(self.config.ws_protocol_class))
        if self.config.ws_per_message_deflate:
            self.config.ws_protocol_class = uvicorn_deflate.protocol_class(
                self.config.ws_protocol_class)
        self.state = ServerState()
        self.lifespan = self.config.lifespan_class(self.config)
        self._factory = lambda: self.config.http_protocol_class(
            config=self.config, server_state=self.state, app_state=self.lifespan.state)
        self._guard = functools.partial(ConnectionGuard, limits=limits, rate=websocket_rate)
        self.routing: Routing | None = None
        """Set to hand requests of other workers' sessions back (:func:`routing`)."""

    async def start(self) -> None:
        """Run the app's lifespan startup; raise BootError when it fails."""
        self.tick()
        await self.lifespan.startup()
        if self.lifespan.should_exit:
            raise BootError("the ASGI app's lifespan startup failed (see the log)")

    def tick(self) -> None:
        """Refresh the Date header (uvicorn does it once a second)."""
        date = email.utils.formatdate(time.time(), usegmt=True).encode()
        self.state.default_headers = [(b"date", date), *self.config.encoded_headers]

    def serve(self, sock: socket.socket, address: tuple[str, int], preface: bytes = b"") -> None:
        """Serve one handed-over client connection (a resumed one: ``preface`` first)."""
        connect(self._factory, sock, address, self.routing, preface, self._guard)

    @property
    def open_connections(self) -> int:
        """HTTP and websocket connections still open."""
        return len(self.state.connections)

    async def stop(self, timeout: float) -> None:
        """Close every connection (a request in progress first finishes), then run the lifespan shutdown."""
        for connection in list(self.state.connections):
            connection.shutdown()
        deadline = time.monotonic() + timeout
        while self.state.connections and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await self.lifespan.shutdown()



def idle(protocol: Any) -> bool:
    """Whether uvicorn's HTTP protocol (httptools or h11) has answered every request it read."""
    cycle = getattr(protocol, "cycle", None)
    return (cycle is None or cycle.response_complete) and not getattr(protocol, "pipeline", None)


def deflate_is_bounded(ws_protocol_class: Any) -> bool:
    """Whether uvicorn's websocket implementation inflates a message at most ``ws_max_size``
    (the websockets ones do; wsproto inflates each frame whole)."""
    return ws_protocol_class is not None and "wsproto" not in ws_protocol_class.__module__
