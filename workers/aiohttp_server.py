"""aiohttp apps on handed-over sockets, with aiohttp's own low-level server.

``AppRunner.setup`` runs the app's startup signals and makes its ``web.Server``, a
protocol factory; each socket the master hands over becomes a connection through
``loop.connect_accepted_socket`` with it. No site, no listener in the worker.
"""
from __future__ import annotations

import asyncio
import socket
import time

from aiohttp import web

from .peer import connect


class AiohttpConnections:
    """Serves an ``aiohttp.web.Application`` on the sockets handed to it.

    :param app: the aiohttp application (the AsyncServer attached to it).
    """

    def __init__(self, app: web.Application) -> None:
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)

    async def start(self) -> None:
        """Run the app's startup signals and make its server."""
        await self._runner.setup()

    def tick(self) -> None:
        """Nothing to refresh: aiohttp keeps its own Date header."""

    def serve(self, sock: socket.socket, address: tuple[str, int]) -> None:
        """Serve one handed-over client connection."""
        assert self._runner.server is not None, "start() first"
        connect(self._runner.server, sock, address)

    @property
    def open_connections(self) -> int:
        """HTTP and websocket connections still open."""
        server = self._runner.server
        return len(server.connections) if server is not None else 0

    async def stop(self, timeout: float) -> None:
        """Close every connection (a request in progress gets ``timeout``), then clean the app up."""
        started = time.monotonic()
        if self._runner.server is not None:
            await self._runner.server.shutdown(timeout)
        await asyncio.wait_for(self._runner.cleanup(), max(1.0, timeout - (time.monotonic() - started)))
