"""One kept-alive connection from the forwarder to a peer host, spoken with h11.

Opened from this host's advertised IP (so the peer's master knows it for a peer's and
believes its PROXY header), its first bytes a PROXY v2 header naming the client; then
requests and responses, one after the other, for the life of the client connection that
opened it. Every byte counts in the peer's :class:`~cluster.hosts.counts.PeerCounts`.
"""
from __future__ import annotations

import asyncio
import errno
import ipaddress
import socket

import h11

from . import proxy_v2
from .addresses import Address
from .counts import PeerCounts

READ_SIZE = 64 * 1024
"""Most bytes read from a peer at once (a bound on what waits in memory per connection)."""

MAX_RESPONSE_HEAD = 64 * 1024
"""Largest response head taken from a peer."""


class Upstream:
    """A connection to a peer, made by :meth:`open`.

    :param sock: the connected, non-blocking socket.
    :param counts: where its bytes are counted.
    """

    def __init__(self, sock: socket.socket, counts: PeerCounts) -> None:
        self.sock = sock
        self.conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_RESPONSE_HEAD)
        self._counts = counts
        self._loop = asyncio.get_running_loop()

    @classmethod
    async def open(cls, address: Address, local_ip: str | None, client: tuple[str, int] | None,
                   counts: PeerCounts) -> "Upstream":
        """Connect to the peer at ``address`` (from ``local_ip`` when this host has it) and
        write the PROXY v2 header for ``client``. Raises OSError when it cannot."""
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(address[0], address[1], type=socket.SOCK_STREAM)
        family, _type, proto, _name, where = infos[0]
        sock = socket.socket(family, socket.SOCK_STREAM, proto)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            _bind(sock, family, local_ip)
            await loop.sock_connect(sock, where)
            upstream = cls(sock, counts)
            await upstream.write(proxy_v2.header(client, sock.getpeername()[:2]))
        except BaseException:
            sock.close()
            raise
        return upstream

    def usable(self) -> bool:
        """Whether a new request may go on this connection: h11 is ready for one and the
        peer has not closed it meanwhile (nor sent anything unasked)."""
        if self.conn.our_state is not h11.IDLE or self.conn.their_state is not h11.IDLE:
            return False
        try:
            return not self.sock.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            return True
        except OSError:
            return False

    async def send(self, event: h11.Event) -> None:
        """Write one h11 event (a request head, a piece of body, its end)."""
        data = self.conn.send(event)
        if data:
            await self.write(data)

    async def write(self, data: bytes) -> None:
        """Write raw bytes, waiting while the peer does not take them."""
        await self._loop.sock_sendall(self.sock, data)
        self._counts.bytes_out += len(data)

    async def read(self) -> bytes:
        """Read what the peer sent (``b""``: it closed the connection)."""
        data = await self._loop.sock_recv(self.sock, READ_SIZE)
        self._counts.bytes_in += len(data)
        return data

    async def next_event(self) -> h11.Event:
        """The next h11 event from the peer, reading as needed; ``h11.RemoteProtocolError``
        when the peer closes or breaks the response."""
        while True:
            event = self.conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            self.conn.receive_data(await self.read())

    def close(self) -> None:
        """Close the connection."""
        self.sock.close()


def _bind(sock: socket.socket, family: int, local_ip: str | None) -> None:
    """Bind ``sock`` to ``local_ip`` (port 0) when it is an IP of the socket's family that
    this host has; else the kernel picks the source."""
    if not local_ip:
        return
    try:
        address = ipaddress.ip_address(local_ip.partition("%")[0])
    except ValueError:
        return
    if (address.version == 4) != (family == socket.AF_INET):
        return
    try:
        sock.bind((local_ip, 0))
    except OSError as exc:
        if exc.errno != errno.EADDRNOTAVAIL:
            raise
