"""The asyncio worker runtime: AsyncServer, ASGI (FastAPI, Starlette) and aiohttp apps.

One event loop (uvloop when installed) does everything: it reads the master's channel
(:mod:`workers.asyncio.link`), serves each handed-over socket with a real server's protocol
(:mod:`workers.asyncio.asgi_server`: uvicorn's; :mod:`workers.asyncio.aiohttp_server`:
aiohttp's; behind :mod:`workers.asyncio.guard`, which applies the worker's limits, and under
``--route sid`` :mod:`workers.asyncio.protocol`, which hands a request for another worker's
session back to the master), runs the client manager (:mod:`workers.managers` picks the
asyncio twins) and sends the heartbeats, so that a blocked loop stops them and the master
kills the worker. The boot sequence is the shared one (:mod:`workers.boot`), run on the
loop, with one step more: after the client manager, start the app (lifespan or startup
signals), before reporting ready.
"""
from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from cluster.protocol.frames import Heartbeat

from .. import spread
from ..boot import Runtime

if TYPE_CHECKING:
    from .link import AsyncMasterLink


class AsyncioRuntime(Runtime):
    """One event loop: the channel, uvicorn's or aiohttp's protocols, the heartbeats."""

    name = "asyncio"
    warm_modules = ("uvloop", "engineio.async_drivers.asgi", "workers.asyncio.link",
                    "workers.asyncio.protocol", "workers.asyncio.peer",
                    "workers.asyncio.asgi_server")

    def run(self) -> None:
        """Run the boot sequence and serve on a new event loop until drained."""
        loop = _new_loop()
        asyncio.set_event_loop(loop)
        loop.run_until_complete(self._run())

    async def _run(self) -> None:
        self.boot()
        await self.connections.start()
        self.drained: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.draining: asyncio.Task[None] | None = None
        self.ready()
        await self.drained
        self.heartbeats.cancel()

    def open(self) -> AsyncMasterLink:
        """Make the connections' server (ASGI or aiohttp) and the link that feeds it."""
        import engineio.async_socket

        from .. import access_log, forwarded, pings
        from ..limits import http_limits
        from . import packet_queue, peer
        from .link import AsyncMasterLink
        from .protocol import Routing

        spec, app = self.spec, self.app
        loop = asyncio.get_running_loop()
        peer.fix_remote_addr(app.server.eio)
        pings.install(engineio.async_socket.AsyncSocket, loop.call_later,
                      pings.into_queue)
        packet_queue.install(app.server.eio, engineio.async_socket.AsyncSocket)
        limits = http_limits(spec, app)
        lines = access_log.writer(spec)
        trusted = forwarded.trust_of(spec.forwarded_allow_ips)
        if app.aiohttp is not None:
            from . import aiohttp_server as kind
            if trusted is not None:
                app.aiohttp.middlewares.insert(0, forwarded.aiohttp_middleware())
            kind.install_websocket(app.server.eio, spec.websocket_deflate)
            self.connections: Any = kind.AiohttpConnections(
                app.aiohttp, spec.worker_connections, limits, spec.websocket_rate, lines)
        else:
            from . import asgi_server as kind  # type: ignore[no-redef]
            asgi_app = forwarded.asgi(app.asgi) if trusted is not None else app.asgi
            self.connections = kind.AsgiConnections(asgi_app, spec.worker_connections, limits,
                                                    spec.websocket_rate,
                                                    spec.websocket_deflate, lines)
        serve_client = (self.connections.serve if trusted is None
                        else forwarded.marking(self.connections.serve, trusted))
        link = AsyncMasterLink(self.sock, serve_client, loop)
        if spec.hand_back:
            self.connections.routing = Routing(spec.owner, link.hand_back, kind.idle,
                                               spec.place_new_sessions)
        return link

    def load(self) -> Heartbeat:
        """The sessions, and the connections open."""
        return Heartbeat(len(self.app.server.eio.sockets), self.connections.open_connections)

    def busy(self) -> bool:
        """A session is still open."""
        return bool(self.app.server.eio.sockets)

    def on_drain(self) -> None:
        """Drain in a task (once); its end ends the worker."""
        if self.draining is None:
            self.draining = asyncio.get_running_loop().create_task(self.drain())
            self.draining.add_done_callback(
                lambda _task: self.drained.done() or self.drained.set_result(None))

    def start_heartbeats(self) -> None:
        """Beat from a task of the loop."""
        self.heartbeats = asyncio.get_running_loop().create_task(self._heartbeats())

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.spec.heartbeat_interval)
            self.connections.tick()
            self.beat()

    async def drain(self) -> None:
        """Drain (:meth:`~workers.boot.Runtime.drain_waits`), close the sessions left, then
        the connections."""
        deadline = time.monotonic() + self.spec.graceful_timeout
        for pause in self.drain_waits(deadline):
            await asyncio.sleep(pause)
        sockets = self.app.server.eio.sockets
        spread.log_closing(len(sockets), self.spec.drain_spread)
        for batch, pause in spread.batches(list(sockets.values()), self.spec.drain_spread,
                                           time.monotonic):
            for eio_socket in batch:
                if not eio_socket.closed:  # it may have ended by itself meanwhile
                    await _close_now(eio_socket)
            await asyncio.sleep(pause)
        await self.connections.stop(max(1.0, deadline - time.monotonic()))


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


async def _close_now(eio_socket: Any) -> None:
    """Close an Engine.IO session and its transport now, without a goodbye.

    python-engineio's ``AsyncSocket.close`` leaves the websocket's writer waiting for its
    next packet (up to the ping timeout: the client notices nothing until then); its
    eventlet twin wakes the writer with ``None``, and so does this.
    """
    await eio_socket.close(wait=False, abort=True)
    eio_socket.queue.put_nowait(None)
