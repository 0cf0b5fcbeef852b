"""A protocol between the transport and the asyncio server's own, that gives back the
requests this worker does not own.

The asyncio twin of :mod:`workers.eventlet.protocol`. uvicorn's and aiohttp's protocols
are fed bytes by the transport (``data_received``) and parse them in C; they have no
hook before a request line is acted on. So :class:`HandBackProtocol` sits in front:
it follows where each request begins (:class:`~workers.asyncio.request_bounds.RequestBounds`),
holds the bytes of a new request until its request line is whole, and asks
:func:`workers.handback.goes_back`. A request for another worker's sid (or, after a
connection's first request, one that starts a session, for the master to place) is not
fed to the server: the socket is duplicated and sent to the master with the bytes read
(:meth:`workers.asyncio.link.AsyncMasterLink.hand_back`), then the transport is closed
without a shutdown: the connection lives on in the owner. The server saw an idle
keep-alive connection end.

It hands a connection back only when the server is done with the previous request
(:attr:`Routing.idle`) and nothing waits to be written: a client that pipelines has
its requests served here (as with ``--route ip``). The first request of a resumed
connection is served here whatever it names, so a connection cannot bounce between
workers (see :mod:`workers.handback`). After an upgrade (a websocket) the connection
is the server's alone: the protocol steps out of the transport's way, and lets go of
what it held (:meth:`HandBackProtocol._step_aside`).
"""
from __future__ import annotations

import asyncio
import dataclasses
from typing import Callable

from cluster.protocol.frames import RESUME_LIMIT

from ..handback import goes_back
from .request_bounds import HEAD_LIMIT, RequestBounds

HandBack = Callable[[int, tuple[str, int], bytes], None]
"""Sends a copy of a client socket's fd, the client's address and the bytes read to the master."""


@dataclasses.dataclass(frozen=True)
class Routing:
    """What a worker needs to hand requests back.

    :param own_tag: the tag of this worker (the one its sids carry).
    :param hand_back: sends a copy of the client's fd, its address and the bytes read.
    :param idle: whether a server protocol has answered every request it was fed.
    :param place_new_sessions: hand back a later request of a connection that starts a
                               session, for the master to place.
    """

    own_tag: int
    hand_back: HandBack
    idle: Callable[[asyncio.Protocol], bool]
    place_new_sessions: bool = False


class HandBackProtocol(asyncio.Protocol):
    """Feeds ``protocol`` the connection's bytes, except a request another worker owns.

    :param protocol: what the transport would drive (the server's protocol, or a wrapper).
    :param server: the server's protocol itself (asked whether it is idle).
    :param routing: this worker's tag and hand-back.
    :param address: the client's address (as the master handed it over).
    :param preface: the bytes a resumed connection came with: its first request, served here.
    """

    def __init__(self, protocol: asyncio.Protocol, server: asyncio.Protocol, routing: Routing,
                 address: tuple[str, int], preface: bytes = b"") -> None:
        self._protocol = protocol
        self._server = server
        self._routing = routing
        self._address = address
        self._preface = preface
        self._serve_next_here = bool(preface)
        self._first_request = True
        self._bounds = RequestBounds()
        self._held = b""
        self._transport: asyncio.Transport | None = None
        self.connection_lost = protocol.connection_lost  # type: ignore[method-assign]
        self.pause_writing = protocol.pause_writing  # type: ignore[method-assign]
        self.resume_writing = protocol.resume_writing  # type: ignore[method-assign]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Give the server the transport; then the bytes a resumed connection came with."""
        self._transport = transport  # type: ignore[assignment]
        self._protocol.connection_made(transport)
        if self._preface:
            preface, self._preface = self._preface, b""
            self.data_received(preface)

    def data_received(self, data: bytes) -> None:
        """Feed the server what is its own; hand back a request for another worker's session."""
        if self._bounds.lost:
            self._protocol.data_received(data)
            return
        if self._held:
            data, self._held = self._held + data, b""
        while data:
            if self._bounds.at_start:
                end = data.find(b"\n")
                if end < 0 and len(data) < HEAD_LIMIT:
                    self._held = data  # the request line is not whole yet
                    return
                first, self._first_request = self._first_request, False
                if self._serve_next_here:
                    self._serve_next_here = False
                elif end >= 0 and self._hands_back(data[:end + 1], data, first):
                    return
            used = self._bounds.feed(data)
            self._protocol.data_received(data[:used])
            data = data[used:]
        if self._bounds.lost:
            self._step_aside()

    def _step_aside(self) -> None:
        """The connection is the server's alone from now on (an upgrade, or a request that
        cannot be followed): the transport drives the protocol behind directly, and this
        one is let go with what it kept, the server's HTTP protocol among them (uvicorn's
        outlives the upgrade only through it: 5.5 KB per idle websocket, measured with
        ``python -m bench.memtrace``)."""
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.set_protocol(self._protocol)

    def eof_received(self) -> bool | None:
        """The client sent its last bytes: the server gets any held back, then the end."""
        if self._held:
            held, self._held = self._held, b""
            self._protocol.data_received(held)
        return self._protocol.eof_received()

    def _hands_back(self, line: bytes, data: bytes, first: bool) -> bool:
        """Hand the connection back when ``line`` goes back to the master (``first``: the
        connection's first request); True if done."""
        transport = self._transport
        routing = self._routing
        if transport is None or not goes_back(line, routing.own_tag,
                                              routing.place_new_sessions and not first):
            return False
        sock = transport.get_extra_info("socket")
        if (sock is None or len(data) > RESUME_LIMIT or transport.get_write_buffer_size()
                or not self._routing.idle(self._server)):
            return False  # served here: it gets the same answer as with --route ip
        transport.pause_reading()
        self._routing.hand_back(sock.fileno(), self._address, data)
        transport.close()  # no shutdown: the master holds a copy of the socket
        return True
