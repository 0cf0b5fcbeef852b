"""aiohttp apps on handed-over sockets, with aiohttp's own low-level server.

``AppRunner.setup`` runs the app's startup signals and makes its ``web.Server``, a
protocol factory; each socket the master hands over becomes a connection through
``loop.connect_accepted_socket`` with it. No site, no listener in the worker.

The worker's limits go into aiohttp's settings where it has them (``keepalive_timeout``,
``max_line_size`` and ``max_field_size``; python-engineio makes each websocket with
``max_msg_size`` set to ``max_http_buffer_size``: counted over a message's fragments, and
the bound aiohttp's permessage-deflate decoder inflates to; deflate itself only with
``--websocket-deflate``: :func:`install_websocket`); the others are applied in front of
aiohttp's protocol (:mod:`workers.asyncio.guard`). The access log is the worker's own,
through aiohttp's ``access_log_class`` hook. An
Application's ``client_max_size`` is the app's, for its own routes: the Engine.IO POST
limit is applied before aiohttp reads a body.

aiohttp has no connection limit of its own (uvicorn's ``limit_concurrency`` is the
ASGI side's): a socket handed over while ``--worker-connections`` are open gets
:class:`ServiceUnavailable` instead, a 503 once its request head is in, then the
connection closes. The heartbeat's connection count tells the master the worker is
full, so new clients go to the others meanwhile.
"""
from __future__ import annotations

import asyncio
import functools
import logging
import os
import socket
import time
from typing import Any

from aiohttp import web
from engineio.async_drivers import aiohttp as engineio_aiohttp

from ..access_log import LineWriter
from ..limits import HttpLimits
from .access_log import aiohttp_logger
from .guard import ConnectionGuard
from .peer import connect
from .protocol import Routing

log = logging.getLogger("sticky_cluster.worker")

LINE_LIMIT = 8190
"""Longest request line and header line (aiohttp's default; eventlet's is 8 KiB too)."""


class AiohttpConnections:
    """Serves an ``aiohttp.web.Application`` on the sockets handed to it.

    :param app: the aiohttp application (the AsyncServer attached to it).
    :param worker_connections: the most connections served at once (more get a 503).
    :param limits: the worker's HTTP limits.
    :param websocket_rate: bytes per second one websocket may send on average.
    :param access_log: writes the access log, if there is one.
    """

    def __init__(self, app: web.Application, worker_connections: int, limits: HttpLimits,
                 websocket_rate: float, access_log: LineWriter | None = None) -> None:
        logs: dict[str, Any] = {"access_log": None}
        if access_log is not None:
            logs = {"access_log": log, "access_log_class": aiohttp_logger(access_log)}
        self._runner = web.AppRunner(app, handle_signals=False,
                                     keepalive_timeout=limits.keepalive_timeout,
                                     max_line_size=LINE_LIMIT, max_field_size=LINE_LIMIT, **logs)
        self._limit = worker_connections
        self._header_timeout = limits.header_timeout
        self._guard = functools.partial(ConnectionGuard, limits=limits, rate=websocket_rate)
        self._connecting = 0  # handed over, not connected to a protocol yet
        self.routing: Routing | None = None
        """Set to hand requests of other workers' sessions back."""

    async def start(self) -> None:
        """Run the app's startup signals and make its server."""
        await self._runner.setup()

    def tick(self) -> None:
        """Nothing to refresh: aiohttp keeps its own Date header."""

    def serve(self, sock: socket.socket, address: tuple[str, int], preface: bytes = b"") -> None:
        """Serve one handed-over client connection (a resumed one: ``preface`` first)."""
        assert self._runner.server is not None, "start() first"
        if self.open_connections >= self._limit:
            log.warning("worker %d is full (--worker-connections %d): a connection gets a 503",
                        os.getpid(), self._limit)
            connect(functools.partial(ServiceUnavailable, self._header_timeout), sock, address)
            return
        self._connecting += 1
        connect(self._runner.server, sock, address, self.routing, preface,
                self._guard).add_done_callback(
            self._connected)

    def _connected(self, _task: asyncio.Task) -> None:
        self._connecting -= 1

    @property
    def open_connections(self) -> int:
        """HTTP and websocket connections open or being opened."""
        server = self._runner.server
        return self._connecting + (len(server.connections) if server is not None else 0)

    async def stop(self, timeout: float) -> None:
        """Close every connection (a request in progress gets ``timeout``), then clean the app up."""
        started = time.monotonic()
        if self._runner.server is not None:
            await self._runner.server.shutdown(timeout)
        await asyncio.wait_for(self._runner.cleanup(), max(1.0, timeout - (time.monotonic() - started)))


def idle(protocol: Any) -> bool:
    """Whether aiohttp's ``RequestHandler`` has answered every request it read."""
    return not protocol._request_in_progress and not protocol._messages  # noqa: SLF001


REFUSAL = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n"
           b"content-length: 19\r\nconnection: close\r\n\r\nService Unavailable")
"""The answer to a connection past ``--worker-connections`` (the words uvicorn's 503 uses)."""

HEAD_LIMIT = 16384
"""Bytes of a refused connection's request read at most before it is answered."""


class ServiceUnavailable(asyncio.Protocol):
    """Answers a connection's first request with :data:`REFUSAL` and closes it.

    It waits for the request head (up to :data:`HEAD_LIMIT` bytes or ``header_timeout``
    seconds), so that the client reads the answer instead of a reset.
    """

    def __init__(self, header_timeout: float) -> None:
        self._header_timeout = header_timeout
        self._transport: asyncio.Transport | None = None
        self._head = b""
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self._timer = asyncio.get_running_loop().call_later(self._header_timeout, transport.close)

    def data_received(self, data: bytes) -> None:
        self._head += data
        if b"\r\n\r\n" in self._head or b"\n\n" in self._head or len(self._head) >= HEAD_LIMIT:
            assert self._transport is not None
            self._transport.write(REFUSAL)
            self._transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()


class WebSocket(engineio_aiohttp.WebSocket):
    """python-engineio's aiohttp websocket, granting permessage-deflate only when
    :attr:`deflate` (aiohttp's ``compress``, on by default there); use :func:`install_websocket`."""

    deflate: bool

    async def __call__(self, environ: dict) -> web.WebSocketResponse:
        # python-engineio's own __call__, with aiohttp's compress given
        self._sock = web.WebSocketResponse(max_msg_size=self.server.max_http_buffer_size,
                                           compress=self.deflate)
        await self._sock.prepare(environ["aiohttp.request"])
        self.environ = environ
        await self.handler(self)
        return self._sock


def install_websocket(eio_server: Any, deflate: bool) -> None:
    """Make ``eio_server`` (a python-engineio AsyncServer of an aiohttp app) serve
    :class:`WebSocket`; ``deflate``: grant permessage-deflate to a client that offers it."""
    endpoint = type("WebSocket", (WebSocket,), {"deflate": bool(deflate)})
    eio_server._async = {**eio_server._async, "websocket": endpoint}  # noqa: SLF001 - no public setter
