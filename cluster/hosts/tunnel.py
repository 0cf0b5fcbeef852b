"""An upgraded connection relayed both ways: client <-> peer, raw bytes, until either closes.

After a ``101 Switching Protocols`` the forwarder stops reading HTTP and joins the client's
socket and the peer's with two :class:`asyncio.Protocol` halves: each chunk received on one
side is written to the other at once, without a future per chunk; when one side's write
buffer passes its high-water mark (64 KiB), the other side's reading pauses until it drains
(backpressure: memory stays bounded whatever the speeds). The bytes already read past each
side's ``101`` exchange go first.
"""
from __future__ import annotations

import asyncio
import socket
from typing import Callable

CLOSE_WAIT = 5.0
"""Seconds the closing sides get to flush what they hold; then they are aborted."""


class _Half(asyncio.Protocol):
    """One side of the relay: what it receives goes to :attr:`other`'s transport."""

    def __init__(self, ended: asyncio.Future, counted: Callable[[int], None]) -> None:
        self.transport: asyncio.Transport | None = None
        self.other: _Half | None = None
        self.lost: asyncio.Future = ended.get_loop().create_future()
        self._ended = ended
        self._counted = counted
        self._held: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def join(self, other: "_Half", first: bytes) -> None:
        """Start relaying to ``other``: ``first`` (read before the switch), then what arrived
        meanwhile."""
        self.other = other
        for data in (first, *self._held):
            if data:
                self._relay(data)
        self._held = []

    def data_received(self, data: bytes) -> None:
        if self.other is None:
            self._held.append(data)
        else:
            self._relay(data)

    def _relay(self, data: bytes) -> None:
        assert self.other is not None and self.other.transport is not None
        self.other.transport.write(data)
        self._counted(len(data))

    def pause_writing(self) -> None:
        if self.other is not None and self.other.transport is not None:
            self.other.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.other is not None and self.other.transport is not None:
            self.other.transport.resume_reading()

    def eof_received(self) -> bool:
        self._end()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)
        self._end()

    def _end(self) -> None:
        if not self._ended.done():
            self._ended.set_result(None)


async def relay(client: socket.socket, peer: socket.socket, to_peer: bytes, to_client: bytes,
                sent: Callable[[int], None], received: Callable[[int], None]) -> None:
    """Relay ``client`` <-> ``peer`` until either closes; both are closed on return.

    :param to_peer: bytes the client sent past its request, to go first.
    :param to_client: bytes the peer sent past its ``101``, to go first.
    :param sent: counts the bytes written to the peer.
    :param received: counts the bytes read from the peer.
    """
    loop = asyncio.get_running_loop()
    ended: asyncio.Future = loop.create_future()
    from_client, from_peer = _Half(ended, sent), _Half(ended, received)
    halves: list[_Half] = []
    try:
        await loop.connect_accepted_socket(lambda: from_client, client)
        halves.append(from_client)
        await loop.create_connection(lambda: from_peer, sock=peer)
        halves.append(from_peer)
        from_peer.join(from_client, to_client)
        from_client.join(from_peer, to_peer)
        await ended
    except BaseException:  # cancelled (the forwarder is leaving) or failed: cut both at once
        for half in halves:
            if half.transport is not None:
                half.transport.abort()
        raise
    for half in halves:
        if half.transport is not None:
            half.transport.close()
    await asyncio.wait([half.lost for half in halves], timeout=CLOSE_WAIT)
    for half in halves:
        if not half.lost.done() and half.transport is not None:
            half.transport.abort()
