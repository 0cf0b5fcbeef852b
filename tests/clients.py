"""Real Socket.IO clients for the tests, each from its own loopback source address."""
from __future__ import annotations

import asyncio
import contextlib
from typing import AsyncIterator

import aiohttp
import socketio


def source_address(index: int) -> str:
    """A distinct loopback address per client: 127.0.1.1, 127.0.1.2, … (never 127.0.0.1)."""
    return f"127.0.{1 + index // 250}.{1 + index % 250}"


@contextlib.asynccontextmanager
async def connected(url: str, source: str, *, transports: list[str] | None = None,
                    namespaces: list[str] | None = None, handlers: dict | None = None,
                    **kwargs) -> AsyncIterator[socketio.AsyncClient]:
    """An AsyncClient connected to ``url`` (``namespaces``, default ``/``) from ``source``.

    Polling and the websocket both go out from ``source`` (aiohttp ``local_addr``).
    ``handlers`` (event name -> handler, on each of ``namespaces``) are in place before the
    connection, so that an event the server sends at connect is not missed.
    """
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(source, 0)))
    client = socketio.AsyncClient(http_session=session, reconnection=False, **kwargs)
    for event, handler in (handlers or {}).items():
        for namespace in namespaces or ["/"]:
            client.on(event, handler, namespace=namespace)
    try:
        await client.connect(url, transports=transports or ["polling", "websocket"],
                             namespaces=namespaces, wait_timeout=10)
        yield client
    finally:
        with contextlib.suppress(Exception):
            await client.disconnect()
        await session.close()


async def wait_upgraded(client: socketio.AsyncClient, timeout: float = 10) -> None:
    """Wait until the client's Engine.IO transport is the websocket."""
    deadline = asyncio.get_running_loop().time() + timeout
    while client.transport() != "websocket":
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("the client never upgraded to websocket")
        await asyncio.sleep(0.02)
