"""The forwarder's socket reads and writes on its event loop, at the cost of one future each.

``asyncio.wait_for(loop.sock_recv(...), timeout)`` makes a task for the coroutine, a
future for the read and a timer, and registers the socket with the selector and removes
it again, for every read (a forwarded polling request made about four), and
``loop.sock_sendall`` a coroutine per write. A :class:`Reader` tries the read at once when
asked (the bytes are often there already), else waits for it with one future and one
timer, and leaves its socket registered between reads (it stops watching when bytes come
that nobody waits for); :func:`send_all` writes at once and only waits
(``loop.sock_sendall``) for what the socket did not take. Both take non-blocking sockets.
"""
from __future__ import annotations

import asyncio
import socket


def _expire(done: asyncio.Future) -> None:
    if not done.done():
        done.set_exception(asyncio.TimeoutError())


class Reader:
    """Reads one socket on the running loop. :meth:`stop` it before the socket is closed,
    handed on or given to a transport.

    :param sock: a non-blocking socket.
    :param size: most bytes read at once.
    """

    def __init__(self, sock: socket.socket, size: int) -> None:
        self._loop = asyncio.get_running_loop()
        self._sock = sock
        self._fd = sock.fileno()
        self._size = size
        self._waiter: asyncio.Future | None = None
        self._watching = False

    async def receive(self, timeout: float, eager: bool = False,
                      waiting: set[asyncio.Future] | None = None) -> bytes:
        """At most ``size`` bytes (``b""``: the peer closed), within ``timeout`` seconds
        (else ``asyncio.TimeoutError``).

        :param eager: try the read before waiting (when the bytes are likely there).
        :param waiting: the read's future stays in this set while it waits (whoever holds
                        the set may end the wait early with ``b""``).
        """
        if eager:
            try:
                return self._sock.recv(self._size)
            except (BlockingIOError, InterruptedError):
                pass
        done = self._waiter = self._loop.create_future()
        if not self._watching:
            self._loop.add_reader(self._fd, self._readable)
            self._watching = True
        timer = self._loop.call_later(max(timeout, 0.0), _expire, done)
        if waiting is not None:
            waiting.add(done)
        try:
            return await done
        finally:
            timer.cancel()
            self._waiter = None
            if waiting is not None:
                waiting.discard(done)

    def _readable(self) -> None:
        done = self._waiter
        if done is None or done.done():  # nobody reads: stop watching until someone does
            self._unwatch()
            return
        try:
            data = self._sock.recv(self._size)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            done.set_exception(exc)
        else:
            done.set_result(data)

    def stop(self) -> None:
        """Stop watching the socket (before it is closed or handed on)."""
        self._unwatch()

    def _unwatch(self) -> None:
        if self._watching:
            self._loop.remove_reader(self._fd)
            self._watching = False


async def send_all(loop: asyncio.AbstractEventLoop, sock: socket.socket,
                   data: bytes | bytearray | memoryview) -> None:
    """Write all of ``data`` to ``sock``, waiting while it does not take them."""
    try:
        sent = sock.send(data)
    except (BlockingIOError, InterruptedError):
        sent = 0
    if sent < len(data):
        await loop.sock_sendall(sock, memoryview(data)[sent:])
