"""Turn a target (``module:attr``, ``module:factory()`` or an object) into a served app.

The target also decides the worker runtime (a key of :data:`cluster.protocol.spec.RUNTIMES`): a
``socketio.Server`` by its ``async_mode`` (eventlet, gevent or threading, Flask-SocketIO's
and a ``WSGIApp``'s included); an
``AsyncServer``, an ``ASGIApp`` (with or without ``other_asgi_app``), an ASGI app with
an ``ASGIApp`` mounted (FastAPI, Starlette) or an aiohttp ``Application`` with an
``AsyncServer`` attached: asyncio. This module imports neither eventlet nor gevent, so
the master's pre-flight check can ask it which runtime a target needs.
"""
from __future__ import annotations

import dataclasses
import importlib
import os
import re
import sys
import sysconfig
import traceback
from types import TracebackType
from typing import Any, Callable

from cluster.protocol import PACKAGES

from . import library_logs

_TARGET = re.compile(r"^(?P<module>[A-Za-z_][\w.]*):(?P<attr>[A-Za-z_][\w.]*)(?P<call>\(\))?$")


class TargetError(Exception):
    """The target cannot be served; the message is one line meant for the user."""


@dataclasses.dataclass(frozen=True)
class App:
    """A python-socketio server, the runtime it needs and the callable that serves it.

    Exactly one of ``wsgi``, ``asgi`` and ``aiohttp`` is set.
    """

    server: Any
    """The ``socketio.Server`` or ``socketio.AsyncServer``."""
    runtime: str
    """A key of :data:`cluster.protocol.spec.RUNTIMES`."""
    wsgi: Callable[..., Any] | None = None
    """The WSGI app (eventlet, gevent and threading runtimes)."""
    asgi: Callable[..., Any] | None = None
    """The ASGI app (asyncio runtime, served with uvicorn's protocols)."""
    aiohttp: Any = None
    """The ``aiohttp.web.Application`` (asyncio runtime, served with aiohttp's own server)."""

    @property
    def engineio_path(self) -> str:
        """The URL path of the Engine.IO endpoint (``/socket.io/`` unless the app says)."""
        for holder in (self.wsgi, getattr(self.wsgi, "wsgi_app", None)):
            path = getattr(holder, "engineio_path", None)
            if isinstance(path, str):
                return path
        return "/socket.io/"


def load(target: object, runtime: str | None = None) -> App:
    """Import ``target`` if it is a string, then find its python-socketio server.

    ``runtime`` (a key of :data:`cluster.protocol.spec.RUNTIMES`) is the worker class asked for; None
    takes the one the target needs. Raises TargetError with a one-line message on any
    user mistake, a mismatch between the two included.
    """
    obj = import_target(target) if isinstance(target, str) else target
    library_logs.adopt()  # the app made its Server: its log lines go out once, through ours
    label = target if isinstance(target, str) else type(obj).__name__
    app = as_app(obj, label)
    if runtime is not None and runtime != app.runtime:
        raise TargetError(f"{label}: this app needs the {app.runtime} worker class, "
                          f"not {runtime} ({_why(app)})")
    return app


def warnings(target: str) -> list[str]:
    """What the user should know about ``target``, which loads (one line each): that it
    names the bare Socket.IO server of an app of its module that serves more (a FastAPI,
    Starlette or WSGI app's own routes), which are then not served."""
    import socketio

    match = _TARGET.match(target)
    if match is None or match["call"]:
        return []
    server = import_target(target)
    if not isinstance(server, (socketio.Server, socketio.AsyncServer)):
        return []
    module = match["module"]
    for name, value in vars(sys.modules[module]).items():
        if _serves_more(value, server):
            return [f"{target} is the Socket.IO server of {module}:{name}, whose other "
                    f"routes are not served this way; to serve them, run {module}:{name}"]
    return []


def _serves_more(app: object, server: Any) -> bool:
    """Whether ``app`` serves ``server`` and routes of its own."""
    import socketio

    if isinstance(app, socketio.ASGIApp):
        return app.engineio_server is server and app.other_asgi_app is not None
    if isinstance(app, socketio.WSGIApp):
        return app.engineio_app is server and app.wsgi_app is not None
    if getattr(app, "routes", None) is None or isinstance(app, type):
        return False
    mounted = _mounted_asgi_app(app)
    return mounted is not None and mounted.engineio_server is server


def import_target(target: str) -> object:
    """Import ``module:attr`` (or call ``module:factory()``) and return the object."""
    match = _TARGET.match(target)
    if match is None:
        raise TargetError(f"bad target {target!r}: expected MODULE:ATTRIBUTE or MODULE:FACTORY()")
    module_name, attr_path = match["module"], match["attr"]
    if module_name.split(".")[0] in PACKAGES:
        raise TargetError(f"bad target {target!r}: {module_name.split('.')[0]!r} is the name of "
                          "sticky-cluster's own package; rename your module")
    if "" not in sys.path:
        sys.path.insert(0, "")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise TargetError(f"cannot import {module_name!r}: no module named {exc.name!r}") from None
        raise TargetError(f"importing {module_name!r} failed: {describe(exc)}") from exc
    except Exception as exc:
        raise TargetError(f"importing {module_name!r} failed: {describe(exc)}") from exc
    obj: object = module
    for name in attr_path.split("."):
        try:
            obj = getattr(obj, name)
        except AttributeError:
            raise TargetError(f"module {module_name!r} has no attribute {attr_path!r}") from None
    if match["call"]:
        if not callable(obj):
            raise TargetError(f"{target!r}: {attr_path!r} is not callable")
        try:
            obj = obj()
        except Exception as exc:
            raise TargetError(f"{target!r}: the factory raised {describe(exc)}") from exc
    return obj


_LIBRARIES = tuple(os.path.realpath(sysconfig.get_paths()[name]) + os.sep
                   for name in ("stdlib", "platstdlib", "purelib", "platlib"))
"""Where Python's own modules and the installed packages are: not the app's code."""


def describe(exc: BaseException) -> str:
    """``KeyError: 'missing' (at app.py, line 7)``: the error and where it was raised in the
    app's code (the deepest frame outside Python's library and the installed packages;
    the deepest frame when none is), as one line."""
    message = " ".join(str(exc).split())
    where = _app_frame(exc.__traceback__)
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return f"{text} (at {where})" if where else text


def _app_frame(tb: TracebackType | None) -> str | None:
    frames = [frame for frame in traceback.extract_tb(tb)
              if not frame.filename.startswith("<") and os.path.realpath(frame.filename)
              != os.path.realpath(__file__)]
    if not frames:
        return None
    apps = [frame for frame in frames
            if not os.path.realpath(frame.filename).startswith(_LIBRARIES)]
    frame = (apps or frames)[-1]
    path = os.path.relpath(frame.filename)  # short when under the working directory
    return f"{frame.filename if path.startswith(os.pardir) else path}, line {frame.lineno}"


def as_app(obj: object, label: str) -> App:
    """Find the python-socketio server in ``obj``, the runtime it needs and what serves it."""
    import socketio

    if isinstance(obj, socketio.AsyncServer):
        return _async_server_app(obj, label)
    if isinstance(obj, socketio.ASGIApp):
        return App(_asgi_mode(obj.engineio_server, label), "asyncio", asgi=obj)
    if isinstance(obj, socketio.Server):
        return _checked(obj, label, wsgi=socketio.WSGIApp(obj))
    if isinstance(obj, socketio.WSGIApp):
        return _checked(obj.engineio_app, label, wsgi=obj)
    extensions = getattr(obj, "extensions", None)
    if isinstance(extensions, dict) and "socketio" in extensions and callable(obj):
        server = getattr(extensions["socketio"], "server", None)
        if isinstance(server, socketio.Server):
            return _checked(server, label, wsgi=obj)
        raise TargetError(f"{label}: Flask-SocketIO is not initialised on this app "
                          "(call SocketIO(app) or socketio.init_app(app))")
    if hasattr(obj, "server") and hasattr(obj, "init_app"):
        raise TargetError(f"{label}: name the Flask app, not the SocketIO object (e.g. app:app)")
    mounted = _mounted_asgi_app(obj)
    if mounted is not None:
        return App(_asgi_mode(mounted.engineio_server, label), "asyncio", asgi=obj)
    server = _aiohttp_server(obj)
    if server is not None:
        return App(server, "asyncio", aiohttp=obj)
    raise TargetError(f"{label}: expected a socketio.Server, a socketio.WSGIApp, a Flask app "
                      "using Flask-SocketIO, a socketio.AsyncServer, a socketio.ASGIApp, an ASGI "
                      "app (FastAPI, Starlette) with a socketio.ASGIApp mounted or an aiohttp "
                      f"Application with an AsyncServer attached, got {type(obj).__name__}")


SYNC_MODES = {"eventlet": "eventlet", "gevent": "gevent", "threading": "threading"}
"""``socketio.Server`` async_mode -> the worker runtime that serves it."""


def _checked(server: Any, label: str, wsgi: Callable[..., Any]) -> App:
    mode = getattr(server, "async_mode", None)
    if mode not in SYNC_MODES:
        raise TargetError(f"{label}: the Server uses async_mode={mode!r}; sticky-cluster's "
                          "workers need async_mode='eventlet', 'gevent' or 'threading' (or a "
                          "socketio.AsyncServer)")
    return App(server, SYNC_MODES[mode], wsgi=wsgi)


def _async_server_app(server: Any, label: str) -> App:
    """A bare ``AsyncServer``: served as ASGI or on a new aiohttp Application, by its async_mode."""
    import socketio

    if server.async_mode == "asgi":
        return App(server, "asyncio", asgi=socketio.ASGIApp(server))
    if server.async_mode == "aiohttp":
        from aiohttp import web

        application = web.Application()
        server.attach(application)
        return App(server, "asyncio", aiohttp=application)
    raise TargetError(f"{label}: the AsyncServer uses async_mode={server.async_mode!r}; "
                      "sticky-cluster's asyncio workers serve 'asgi' and 'aiohttp'")


def _asgi_mode(server: Any, label: str) -> Any:
    """``server``, which a ``socketio.ASGIApp`` serves: it must be made for ASGI."""
    mode = getattr(server, "async_mode", None)
    if mode != "asgi":
        raise TargetError(f"{label}: its socketio.ASGIApp serves an AsyncServer made with "
                          f"async_mode={mode!r}; create it with "
                          "socketio.AsyncServer(async_mode='asgi')")
    return server


def _mounted_asgi_app(app: object, depth: int = 0) -> Any:
    """The ``socketio.ASGIApp`` inside an ASGI app, or None.

    It is looked for where ASGI apps keep the apps they serve: a Starlette/FastAPI
    app's mounts (``routes``, also in sub-apps) and a middleware's wrapped ``app``.
    """
    import socketio

    if isinstance(app, socketio.ASGIApp):
        return app
    if app is None or depth > 8:
        return None
    inner = [getattr(route, "app", None) for route in getattr(app, "routes", None) or ()]
    for candidate in [getattr(app, "app", None), *inner]:
        found = _mounted_asgi_app(candidate, depth + 1)
        if found is not None:
            return found
    return None


def _aiohttp_server(app: object) -> Any:
    """The ``socketio.AsyncServer`` attached to an ``aiohttp.web.Application``, or None."""
    if "aiohttp" not in sys.modules:
        return None
    from aiohttp import web

    if not isinstance(app, web.Application):
        return None
    import engineio

    for route in app.router.routes():
        engine = getattr(route.handler, "__self__", None)
        if isinstance(engine, engineio.AsyncServer):
            handler = engine.handlers.get("connect")
            return getattr(handler, "__self__", engine)
    return None


def _why(app: App) -> str:
    if app.runtime == "asyncio":
        return "it is an asyncio app"
    return f"its Server uses async_mode={app.server.async_mode!r}"
