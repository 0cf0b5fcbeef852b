"""The asyncio worker runtime: AsyncServer, ASGI (FastAPI, Starlette) and aiohttp apps.

One event loop (uvloop when installed) does everything: it reads the master's channel
(:mod:`workers.asyncio.link`), serves each handed-over socket with a real server's
protocol (:mod:`workers.asyncio.asgi_server`: uvicorn's; :mod:`workers.asyncio.aiohttp_server`:
aiohttp's; behind :mod:`workers.asyncio.guard`, which applies the worker's limits,
and under ``--route sid`` :mod:`workers.asyncio.protocol`, which hands a request for
another worker's session back to the master), runs the client manager
(:mod:`workers.managers` picks the asyncio twins) and sends the heartbeats, so that a
blocked loop stops them and the master kills the worker. Boot order: import the app,
give it sids that carry this worker's tag, install the client manager, start the app
(lifespan or startup signals), report ready.
"""
from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
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

    Raises (before reporting ready) when the app cannot be loaded or started; the
    caller turns that into a boot-failure exit code.
    """
    from .. import loader

    app = loader.load(spec.target, "asyncio")
    loop = _new_loop()
    asyncio.set_event_loop(loop)
    loop.run_until_complete(_serve(app, spec, sock))
    log.info("worker %d (slot %d) drained", os.getpid(), spec.slot)
    logging.shutdown()
    os._exit(0)


def check(target: str) -> str | None:
    """Load ``target`` the way a worker would; return a one-line error or None."""
    from ..loader import TargetError, load

    try:
        load(target, "asyncio")
    except TargetError as exc:
        return str(exc)
    return None


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


async def _serve(app: Any, spec: WorkerSpec, sock: socket.socket) -> None:
    from .. import access_log, forwarded, managers
    from ..limits import http_limits
    from . import peer
    from .link import AsyncMasterLink
    from .protocol import Routing

    loop = asyncio.get_running_loop()
    server = app.server
    sids.install(server.eio, spec.tag)
    peer.fix_remote_addr(server.eio)
    limits = http_limits(spec, app)
    lines = access_log.writer(spec)
    trusted = forwarded.trust_of(spec.forwarded_allow_ips)
    if app.aiohttp is not None:
        from . import aiohttp_server as kind
        if trusted is not None:
            app.aiohttp.middlewares.insert(0, forwarded.aiohttp_middleware())
        connections: Any = kind.AiohttpConnections(app.aiohttp, spec.worker_connections, limits,
                                                   spec.websocket_rate, lines)
    else:
        from . import asgi_server as kind  # type: ignore[no-redef]
        asgi_app = forwarded.asgi(app.asgi) if trusted is not None else app.asgi
        connections = kind.AsgiConnections(asgi_app, spec.worker_connections, limits,
                                           spec.websocket_rate, lines)
    serve_client = (connections.serve if trusted is None
                    else forwarded.marking(connections.serve, trusted))
    link = AsyncMasterLink(sock, serve_client, loop)
    if spec.hand_back:
        connections.routing = Routing(spec.tag, link.hand_back, kind.idle, spec.place_new_sessions)
    managers.install(server, spec, link)
    await connections.start()
    drained = loop.create_future()
    tasks: list[asyncio.Task] = []

    def drain() -> None:
        if not tasks:
            tasks.append(loop.create_task(_drain(server, link, connections, spec.graceful_timeout,
                                                 spec.drain_spread)))
            tasks[0].add_done_callback(lambda _task: drained.done() or drained.set_result(None))

    link.on_drain = drain
    link.start()
    heartbeat = loop.create_task(_heartbeat(link, server, connections, spec.heartbeat_interval))
    link.send(Kind.READY)
    log.debug("worker %d (slot %d) serving (asyncio)", os.getpid(), spec.slot)
    await drained
    heartbeat.cancel()


async def _heartbeat(link: Any, server: Any, connections: Any, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        connections.tick()
        link.send(Kind.HEARTBEAT,
                  Heartbeat(len(server.eio.sockets), connections.open_connections).encode())


async def _drain(server: Any, link: Any, connections: Any, graceful_timeout: float,
                 drain_spread: float) -> None:
    """Serve the open sessions (sid-routed requests still arrive) until they end or time out.

    The worker takes hand-offs until it has had no session for :data:`DRAIN_QUIET`
    seconds (a session's next request may be on its way), then takes no more. Sessions
    still open at the graceful timeout are closed without a goodbye, so that Socket.IO
    clients reconnect (to another worker) by themselves, spread evenly over ``drain_spread``
    seconds (:mod:`workers.spread`); then the connections close.
    """
    sockets = server.eio.sockets
    log.info("worker %d draining: %d sessions", os.getpid(), len(sockets))
    deadline = time.monotonic() + graceful_timeout
    while time.monotonic() < deadline and (sockets or link.idle_for() < DRAIN_QUIET):
        await asyncio.sleep(0.1)
    link.closed = True
    while time.monotonic() < deadline and sockets:
        await asyncio.sleep(0.1)
    spread.log_closing(len(sockets), drain_spread)
    for batch, pause in spread.batches(list(sockets.values()), drain_spread, time.monotonic):
        for eio_socket in batch:
            if not eio_socket.closed:  # it may have ended by itself meanwhile
                await _close_now(eio_socket)
        await asyncio.sleep(pause)
    await connections.stop(max(1.0, deadline - time.monotonic()))


async def _close_now(eio_socket: Any) -> None:
    """Close an Engine.IO session and its transport now, without a goodbye.

    python-engineio's ``AsyncSocket.close`` leaves the websocket's writer waiting for its
    next packet (up to the ping timeout: the client notices nothing until then); its
    eventlet twin wakes the writer with ``None``, and so does this.
    """
    await eio_socket.close(wait=False, abort=True)
    eio_socket.queue.put_nowait(None)
