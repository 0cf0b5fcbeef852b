"""The forwarder's socket reads and writes on its event loop, at the cost of one future each.

``asyncio.wait_for(loop.sock_recv(...), timeout)`` makes a task for the coroutine, a
future for the read and a timer, for every read (a forwarded polling request made about
four), and ``loop.sock_sendall`` a coroutine per write. :func:`receive` tries the read at
once when asked (the bytes are often there already), else waits for it with one future
and one timer; :func:`send_all` writes at once and only waits (``loop.sock_sendall``)
for what the socket did not take. Both take non-blocking sockets.
"""
from __future__ import annotations

import asyncio
import socket


def _read(sock: socket.socket, size: int, done: asyncio.Future) -> None:
    if done.done():
        return
    try:
        data = sock.recv(size)
    except (BlockingIOError, InterruptedError):
        return
    except OSError as exc:
        done.set_exception(exc)
    else:
        done.set_result(data)


def _expire(done: asyncio.Future) -> None:
    if not done.done():
        done.set_exception(asyncio.TimeoutError())


async def receive(loop: asyncio.AbstractEventLoop, sock: socket.socket, size: int,
                  timeout: float, eager: bool = False,
                  waiting: set[asyncio.Future] | None = None) -> bytes:
    """At most ``size`` bytes from ``sock`` (``b""``: closed), within ``timeout`` seconds
    (else ``asyncio.TimeoutError``).

    :param eager: try the read before waiting (when the bytes are likely there).
    :param waiting: the read's future stays in this set while it waits (whoever holds
                    the set may end the wait early with ``b""``).
    """
    if eager:
        try:
            return sock.recv(size)
        except (BlockingIOError, InterruptedError):
            pass
    done = loop.create_future()
    fd = sock.fileno()
    loop.add_reader(fd, _read, sock, size, done)
    timer = loop.call_later(max(timeout, 0.0), _expire, done)
    if waiting is not None:
        waiting.add(done)
    try:
        return await done
    finally:
        timer.cancel()
        loop.remove_reader(fd)
        if waiting is not None:
            waiting.discard(done)


async def send_all(loop: asyncio.AbstractEventLoop, sock: socket.socket,
                   data: bytes | bytearray | memoryview) -> None:
    """Write all of ``data`` to ``sock``, waiting while it does not take them."""
    try:
        sent = sock.send(data)
    except (BlockingIOError, InterruptedError):
        sent = 0
    if sent < len(data):
        await loop.sock_sendall(sock, memoryview(data)[sent:])
