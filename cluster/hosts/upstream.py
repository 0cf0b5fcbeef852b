"""One kept-alive connection from the forwarder to a peer host, or to one of this host's workers.

Opened from this host's advertised IP (so the peer's master knows it for a peer's and
believes its PROXY header), its first bytes a PROXY v2 header naming the client; then
requests and responses, one after the other, for the life of the client connection that
opened it (:mod:`cluster.hosts.forwarding` frames them with :mod:`cluster.hosts.http1`).
Every byte counts in the peer's :class:`~cluster.hosts.counts.PeerCounts`.

A connection to this host's own worker (:meth:`Upstream.local`) is one end of a socket
pair whose other end the master hands to the worker that owns the first request's sid,
with the client's address, as it hands it any client connection the forwarder gives
back: the worker serves it as that client's, and the requests for that owner that come
next on the client connection go the same way (not forwards: counted apart, in
:attr:`~cluster.hosts.counts.Counts.own`).
"""
from __future__ import annotations

import asyncio
import errno
import functools
import ipaddress
import socket
from typing import Callable

from . import proxy_v2
from .addresses import Address
from .counts import PeerCounts
from .sockio import Reader, send_all

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
        self.idle = True
        """Whether the last response has ended and nothing else came: a request may go."""
        self.pending = bytearray()
        """Bytes read from the peer and not relayed yet."""
        self._counts = counts
        self._loop = asyncio.get_running_loop()
        self._reader = Reader(sock, READ_SIZE)

    @classmethod
    async def open(cls, address: Address, local_ip: str | None, client: tuple[str, int] | None,
                   counts: PeerCounts) -> "Upstream":
        """Connect to the peer at ``address`` (from ``local_ip`` when this host has it) and
        write the PROXY v2 header for ``client``. Raises OSError when it cannot."""
        loop = asyncio.get_running_loop()
        family, proto, where = _ip_family(address[0]), 0, address
        if family is None:  # a name (peers are given by IP: not on the usual path)
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

    @classmethod
    def local(cls, hand_over: Callable[[socket.socket, bytes], None], first: bytes,
              counts: PeerCounts) -> "Upstream":
        """A connection to this host's worker that owns the sid of the request ``first``
        begins with: ``hand_over`` gives one end of a new socket pair, with ``first`` as
        bytes read from it, to the master (:meth:`cluster.hosts.link.MasterLink.hand_back`),
        which passes both to that worker; the other end is the connection."""
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            mine.setblocking(False)
            hand_over(theirs, first)
        except BaseException:
            mine.close()
            raise
        finally:
            theirs.close()  # the master holds its own copy
        return cls(mine, counts)

    def usable(self) -> bool:
        """Whether a new request may go on this connection: the last exchange ended and
        the peer has not closed it meanwhile (nor sent anything unasked)."""
        if not self.idle or self.pending:
            return False
        try:
            self.sock.recv(1, socket.MSG_PEEK)  # b"": closed; a byte: sent unasked
        except BlockingIOError:
            return True
        except OSError:
            pass
        return False

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        """Write raw bytes, waiting while the peer does not take them."""
        await send_all(self._loop, self.sock, data)
        self._counts.bytes_out += len(data)

    async def read(self, timeout: float) -> bytes:
        """Read what the peer sent within ``timeout`` s (``b""``: it closed the connection;
        ``asyncio.TimeoutError`` when nothing came)."""
        data = await self._reader.receive(timeout)
        self._counts.bytes_in += len(data)
        return data

    def unwatch(self) -> None:
        """Stop watching the socket until the next :meth:`read` (another reader takes it)."""
        self._reader.stop()

    def release(self) -> socket.socket:
        """The socket, no longer read here (for a relay of its own)."""
        self._reader.stop()
        return self.sock

    def close(self) -> None:
        """Close the connection."""
        self._reader.stop()
        self.sock.close()


@functools.lru_cache(maxsize=64)
def _ip_family(text: str) -> int | None:
    """``AF_INET`` or ``AF_INET6`` for an IP address, None for anything else (without a
    look-up in the resolver's thread: a connection to a peer is opened on the hot path)."""
    try:
        address = ipaddress.ip_address(text.partition("%")[0])
    except ValueError:
        return None
    return socket.AF_INET if address.version == 4 else socket.AF_INET6


def _bind(sock: socket.socket, family: int, local_ip: str | None) -> None:
    """Bind ``sock`` to ``local_ip`` (port 0) when it is an IP of the socket's family that
    this host has; else the kernel picks the source."""
    if not local_ip or _ip_family(local_ip) != family:
        return
    try:
        sock.bind((local_ip, 0))
    except OSError as exc:
        if exc.errno != errno.EADDRNOTAVAIL:
            raise
