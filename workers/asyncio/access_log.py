"""The access log (``--access-log``) of the asyncio workers: the same lines as the others.

The servers' own access logs have their own formats; the worker writes ours instead,
through :class:`workers.access_log.LineWriter`, from the facts of each request put in
the WSGI names :func:`workers.access_log.format_line` reads:

- ASGI apps (uvicorn): :class:`AsgiAccessLog`, a middleware around the app, writes a
  request's line when the app returns; a websocket's (status 101 once accepted) when
  its session ends;
- aiohttp apps: :func:`aiohttp_logger`, aiohttp's own access log hook
  (``access_log_class``), which aiohttp calls when each request (or websocket) is done.

A websocket's line counts no body bytes, as in the WSGI workers.
"""
from __future__ import annotations

import time
from typing import Any, Awaitable, Callable

from ..access_log import LineWriter

Asgi = Callable[[dict, Callable[[], Awaitable[dict]], Callable[[dict], Awaitable[None]]],
                Awaitable[None]]


def asgi_environ(scope: dict) -> dict[str, str]:
    """The WSGI names of an ASGI ``http`` or ``websocket`` scope's facts."""
    client = scope.get("client")
    environ = {
        "REMOTE_ADDR": str(client[0]) if client else "-",
        "REQUEST_METHOD": scope.get("method", "GET"),
        "PATH_INFO": scope.get("path", ""),
        "QUERY_STRING": scope.get("query_string", b"").decode("latin-1"),
        "SERVER_PROTOCOL": "HTTP/" + scope.get("http_version", "1.1"),
    }
    for name, value in scope.get("headers", ()):
        if name in (b"referer", b"user-agent", b"upgrade"):
            environ["HTTP_" + name.decode().upper().replace("-", "_")] = value.decode("latin-1")
    return environ


class AsgiAccessLog:
    """ASGI middleware: ``app`` with one line per request (and websocket) written by ``lines``."""

    def __init__(self, app: Asgi, lines: LineWriter) -> None:
        self.app = app
        self._lines = lines

    async def __call__(self, scope: dict, receive: Callable[[], Awaitable[dict]],
                       send: Callable[[dict], Awaitable[None]]) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)  # lifespan
            return
        started, clock = time.time(), time.monotonic()
        status: list[str] = []
        length = 0

        async def observed(message: dict) -> None:
            nonlocal length
            kind = message["type"]
            if kind in ("http.response.start", "websocket.http.response.start"):
                status[:] = [str(message["status"])]
            elif kind == "http.response.body":
                length += len(message.get("body", b""))
            elif kind == "websocket.accept":
                status[:] = ["101"]
            elif kind == "websocket.close" and not status:
                status[:] = ["403"]  # closed before it was accepted: uvicorn answers 403
            await send(message)

        failed = False
        try:
            await self.app(scope, receive, observed)
        except BaseException:
            failed = True  # uvicorn answers 500 if nothing was sent
            raise
        finally:
            if not status:
                status.append("500" if failed else "-" if scope["type"] == "http" else "403")
            self._lines.write(asgi_environ(scope), status[0], length, started,
                              time.monotonic() - clock)


def aiohttp_logger(lines: LineWriter) -> type:
    """An ``access_log_class`` for aiohttp's ``AppRunner`` that writes with ``lines``."""
    from aiohttp.abc import AbstractAccessLogger

    class AccessLogger(AbstractAccessLogger):
        """Writes one line per request aiohttp has answered."""

        def log(self, request: Any, response: Any, time_taken: float) -> None:
            lines.write(aiohttp_environ(request), str(response.status), body_length(response),
                        time.time() - time_taken, time_taken)

    return AccessLogger


def body_length(response: Any) -> int:
    """The body bytes of an aiohttp response: its ``Content-Length``; for a streamed one
    aiohttp's ``body_length``, which counts the head too; none for a websocket."""
    if response.status == 101:
        return 0
    length = response.content_length
    return int(length) if length is not None else response.body_length


def aiohttp_environ(request: Any) -> dict[str, str]:
    """The WSGI names of an aiohttp request's facts."""
    headers = request.headers
    environ = {
        "REMOTE_ADDR": request.remote or "-",
        "REQUEST_METHOD": request.method,
        "PATH_INFO": request.path,
        "QUERY_STRING": request.query_string,
        "SERVER_PROTOCOL": f"HTTP/{request.version.major}.{request.version.minor}",
    }
    for name in ("Referer", "User-Agent", "Upgrade"):
        if name in headers:
            environ["HTTP_" + name.upper().replace("-", "_")] = headers[name]
    return environ
