"""``X-Forwarded-Proto`` and ``X-Forwarded-Host`` from trusted proxies, in every runtime.

Behind a proxy that terminates TLS (HAProxy, nginx, a cloud balancer) the worker reads
plain HTTP, so the app would see ``http``. When the connection's own peer (the hop that
connected to the cluster: the socket's peer, not the client address a PROXY header or
``X-Forwarded-For`` gave) is in ``--forwarded-allow-ips``, each request's
``X-Forwarded-Proto`` sets the scheme the app sees (``wsgi.url_scheme``; the ASGI
scope's ``scheme``, ``https`` or ``wss``; aiohttp's ``request.scheme``) and
``X-Forwarded-Host`` its host (``HTTP_HOST``; the ``host`` header). From any other
peer both headers are left as they are and believed by nobody: the scheme is the
connection's own (python-engineio's ASGI and aiohttp drivers would take the header
from anyone; :func:`workers.asyncio.peer.fix_remote_addr` puts the real one back).

Of a header a proxy chain appended to (``https, http``) the last entry counts: the one
the trusted peer wrote. A value that is not a scheme, or not a host, is ignored.

The trust is decided once per connection: :func:`from_trusted_proxy` for the green
runtimes' handlers (:func:`wsgi_handler`), per request for the threading worker's
(:func:`wsgi_app`, one ``getpeername``), and for the asyncio ones a context variable
set when the connection is handed to its protocol (:func:`marking`), which every task of
that connection inherits (:func:`asgi`, :func:`aiohttp_middleware`).
"""
from __future__ import annotations

import contextvars
import re
import socket
from typing import Any, Callable

from cluster.protocol.trust import Trust, TrustCache

SECURE = {"https": True, "wss": True, "http": False, "ws": False}
_HOST = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")

FROM_TRUSTED_PROXY: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "sticky_cluster_from_trusted_proxy", default=False)
"""In an asyncio worker: whether the current connection's peer is a trusted proxy."""


def trust_of(allowed: str) -> TrustCache | None:
    """The check of ``--forwarded-allow-ips``; None when it trusts nobody (nothing to do)."""
    trust = Trust.parse(allowed)
    return TrustCache(trust) if trust else None


def from_trusted_proxy(sock: socket.socket, trusted: TrustCache) -> bool:
    """Whether ``sock``'s own peer is trusted (a Unix socket's is: it is local)."""
    try:
        peer = sock.getpeername()
    except OSError:
        return False
    return trusted(peer[0]) if isinstance(peer, tuple) else True


def _last(value: str | None) -> str | None:
    if not value:
        return None
    return value.rpartition(",")[2].strip() or None


def secure(value: str | None) -> bool | None:
    """What an ``X-Forwarded-Proto`` value says: True (https), False (http), or None."""
    entry = _last(value)
    return SECURE.get(entry.lower()) if entry else None


def host(value: str | None) -> str | None:
    """An ``X-Forwarded-Host`` value's host (``name[:port]``), or None if it is not one."""
    entry = _last(value)
    return entry if entry and _HOST.fullmatch(entry) else None


# ----------------------------------------------------------------------- WSGI

def apply_to_environ(environ: dict[str, Any]) -> None:
    """Set ``wsgi.url_scheme`` and ``HTTP_HOST`` from the forwarded headers, if any."""
    is_secure = secure(environ.get("HTTP_X_FORWARDED_PROTO"))
    if is_secure is not None:
        environ["wsgi.url_scheme"] = "https" if is_secure else "http"
    forwarded_host = host(environ.get("HTTP_X_FORWARDED_HOST"))
    if forwarded_host is not None:
        environ["HTTP_HOST"] = forwarded_host


def wsgi_app(app: Callable[..., Any], trusted: TrustCache) -> Callable[..., Any]:
    """The WSGI ``app`` with :func:`apply_to_environ` on requests whose connection
    (``environ["werkzeug.socket"]``, the threading worker's) comes from a trusted peer."""
    from .simple_websocket_limits import SOCKET_KEY  # the threading worker's only

    def forwarded_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        sock = environ.get(SOCKET_KEY)
        if sock is not None and from_trusted_proxy(sock, trusted):
            apply_to_environ(environ)
        return app(environ, start_response)

    return forwarded_app


def wsgi_handler(base: type, trusted: TrustCache) -> type:
    """``base`` (eventlet.wsgi's protocol or gevent.pywsgi's handler, one per connection)
    with :func:`apply_to_environ` on the requests of connections from trusted peers."""

    class ForwardedHandler(base):  # type: ignore[misc, valid-type]
        _trusted_peer: bool | None = None

        def get_environ(self) -> dict:
            environ = super().get_environ()
            if self._trusted_peer is None:
                sock = getattr(self, "connection", None) or self.socket
                self._trusted_peer = from_trusted_proxy(sock, trusted)
            if self._trusted_peer:
                apply_to_environ(environ)
            return environ

    ForwardedHandler.__name__ = base.__name__
    return ForwardedHandler


# ----------------------------------------------------------------------- asyncio

def marking(serve: Callable[..., Any], trusted: TrustCache) -> Callable[..., Any]:
    """``serve(sock, address, ...)`` that first marks, in the context the connection's
    tasks inherit, whether ``sock``'s peer is trusted."""

    def serve_marked(sock: socket.socket, *args: Any) -> Any:
        token = FROM_TRUSTED_PROXY.set(from_trusted_proxy(sock, trusted))
        try:
            return serve(sock, *args)
        finally:
            FROM_TRUSTED_PROXY.reset(token)

    return serve_marked


def apply_to_scope(scope: dict[str, Any]) -> dict[str, Any]:
    """``scope`` (ASGI http or websocket) with the forwarded scheme and host, if any."""
    proto = forwarded_host = None
    for name, value in scope.get("headers", ()):
        if name == b"x-forwarded-proto":
            proto = value.decode("latin-1")
        elif name == b"x-forwarded-host":
            forwarded_host = value.decode("latin-1")
    is_secure = secure(proto)
    new_host = host(forwarded_host)
    if is_secure is None and new_host is None:
        return scope
    scope = dict(scope)
    if is_secure is not None:
        websocket = scope["type"] == "websocket"
        scope["scheme"] = ("wss" if is_secure else "ws") if websocket else (
            "https" if is_secure else "http")
    if new_host is not None:
        scope["headers"] = [(name, value) for name, value in scope["headers"] if name != b"host"]
        scope["headers"].append((b"host", new_host.encode("latin-1")))
    return scope


def asgi(app: Any) -> Any:
    """The ASGI ``app`` seeing the forwarded scheme and host on trusted connections."""

    async def forwarded_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan" and FROM_TRUSTED_PROXY.get():
            scope = apply_to_scope(scope)
        await app(scope, receive, send)

    return forwarded_app


def aiohttp_middleware() -> Any:
    """An aiohttp middleware: on trusted connections, the request as the client made it
    (``request.scheme``, ``request.host`` and the ``Host`` header)."""
    from aiohttp import web

    @web.middleware
    async def forwarded(request: Any, handler: Any) -> Any:
        if FROM_TRUSTED_PROXY.get():
            changes: dict[str, Any] = {}
            is_secure = secure(request.headers.get("X-Forwarded-Proto"))
            if is_secure is not None:
                changes["scheme"] = "https" if is_secure else "http"
            new_host = host(request.headers.get("X-Forwarded-Host"))
            if new_host is not None:
                changes["host"] = new_host
                changes["headers"] = request.headers.copy()
                changes["headers"]["Host"] = new_host
            if changes:
                request = request.clone(**changes)
        return await handler(request)

    return forwarded
