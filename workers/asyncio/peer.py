"""The client's real address, for the asyncio servers.

The master hands a worker each client's address with its socket: after a PROXY
protocol header (or a trusted ``X-Forwarded-For``) the socket's own peer is the proxy,
not the client. uvicorn and aiohttp read the peer from the transport, so a connection
whose address differs gets a :class:`PeerTransport` that reports the real one (and
the websocket protocol that takes over the transport sees it too). Engine.IO's ASGI
and aiohttp drivers write ``REMOTE_ADDR = 127.0.0.1`` into every environ, and take
``wsgi.url_scheme`` from any client's ``X-Forwarded-Proto``; :func:`fix_remote_addr`
makes them the client's address and the request's scheme (the forwarded one only from
a trusted proxy: :mod:`workers.forwarded`), as the WSGI servers do.
"""
from __future__ import annotations

import asyncio
import socket
from typing import Any, Callable

from .protocol import HandBackProtocol, Routing


class PeerTransport:
    """A transport that reports ``peer`` as its peer name and delegates the rest.

    It hides the socket (``get_extra_info("socket")``), whose ``getpeername`` is
    the proxy's; servers then read ``peername`` and ``sockname``.
    """

    def __init__(self, transport: asyncio.BaseTransport, peer: tuple[str, int]) -> None:
        self._transport = transport
        self._peer = peer

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """The real client address for ``peername``; the transport's answer otherwise."""
        if name == "peername":
            return self._peer
        if name == "socket":
            return default
        return self._transport.get_extra_info(name, default)

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._transport, name)
        setattr(self, name, value)
        return value


Guard = Callable[[asyncio.Protocol, tuple[str, int]], asyncio.Protocol]
"""Puts the worker's limits in front of a protocol, for a client's address
(:class:`workers.asyncio.guard.ConnectionGuard`)."""


def connect(factory: Callable[[], asyncio.Protocol], sock: socket.socket,
            address: tuple[str, int], routing: Routing | None = None,
            preface: bytes = b"", guard: Guard | None = None) -> asyncio.Task:
    """Serve the handed-over ``sock`` with a protocol from ``factory``, on the running loop.

    The protocol sees ``address`` as the client's (a :class:`PeerTransport` when the
    socket's own peer differs), behind ``guard`` when one is given. With ``routing``, a
    :class:`~workers.asyncio.protocol.HandBackProtocol` in front of them hands back the
    requests of other workers' sessions and serves ``preface`` (the bytes of a resumed
    connection) first. The socket is closed if the loop cannot take it. Returns the task
    that connects it (done once the protocol has the connection).
    """
    peer = _needs_peer(sock, address)

    def protocol() -> asyncio.Protocol:
        server = factory()
        outer = PeerProtocol(server, address) if peer else server
        if guard is not None:
            outer = guard(outer, address)
        if routing is None:
            return outer
        return HandBackProtocol(outer, server, routing, address, preface)

    loop = asyncio.get_running_loop()
    wrapped = peer or routing is not None or guard is not None
    task = loop.create_task(loop.connect_accepted_socket(protocol if wrapped else factory, sock))
    task.add_done_callback(lambda done: done.cancelled() or done.exception() is None or sock.close())
    return task


def _needs_peer(sock: socket.socket, address: tuple[str, int]) -> bool:
    """Whether the hand-off's ``address`` differs from what ``sock`` reports as its peer."""
    if not address[0]:  # a Unix-socket client: nothing better than the socket's own
        return False
    try:
        peer = sock.getpeername()
    except OSError:
        return True
    return tuple(peer[:2]) != tuple(address)


class PeerProtocol(asyncio.Protocol):
    """Hands ``protocol`` a :class:`PeerTransport` and forwards every event to it.

    (A wrapper, not an attribute patched on the protocol: aiohttp's has ``__slots__``.)
    A protocol that takes over the transport later (uvicorn's websocket upgrade) calls
    ``set_protocol`` and is then driven by the transport directly.
    """

    def __init__(self, protocol: asyncio.Protocol, peer: tuple[str, int]) -> None:
        self._protocol = protocol
        self._peer = peer
        self.data_received = protocol.data_received  # type: ignore[method-assign]
        self.eof_received = protocol.eof_received  # type: ignore[method-assign]
        self.connection_lost = protocol.connection_lost  # type: ignore[method-assign]
        self.pause_writing = protocol.pause_writing  # type: ignore[method-assign]
        self.resume_writing = protocol.resume_writing  # type: ignore[method-assign]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Give the protocol the transport, reporting the real client address."""
        self._protocol.connection_made(PeerTransport(transport, self._peer))  # type: ignore[arg-type]


def fix_remote_addr(engineio_server: Any) -> None:
    """Make the ASGI/aiohttp Engine.IO driver of ``engineio_server`` put the client in REMOTE_ADDR."""
    drivers = dict(engineio_server._async)  # noqa: SLF001 - the driver table has no public setter
    translate = drivers["translate_request"]
    if engineio_server.async_mode == "aiohttp":
        def translate_aiohttp(request: Any) -> dict[str, Any]:
            environ = translate(request)
            peer = request.transport.get_extra_info("peername") if request.transport else None
            _set_peer(environ, peer)
            environ["wsgi.url_scheme"] = request.scheme
            return environ
        drivers["translate_request"] = translate_aiohttp
    else:
        async def translate_asgi(scope: dict[str, Any], receive: Any, send: Any) -> dict[str, Any]:
            environ = await translate(scope, receive, send)
            _set_peer(environ, scope.get("client"))
            environ["wsgi.url_scheme"] = "https" if scope.get("scheme") in ("https", "wss") else "http"
            return environ
        drivers["translate_request"] = translate_asgi
    engineio_server._async = drivers  # noqa: SLF001


def _set_peer(environ: dict[str, Any], peer: Any) -> None:
    if isinstance(peer, (tuple, list)) and len(peer) >= 2:
        environ["REMOTE_ADDR"], environ["REMOTE_PORT"] = str(peer[0]), str(peer[1])
