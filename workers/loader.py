"""Turn a target (``module:attr``, ``module:factory()`` or an object) into a served app."""
from __future__ import annotations

import dataclasses
import importlib
import re
import sys
from typing import Any, Callable

from cluster import own

_TARGET = re.compile(r"^(?P<module>[A-Za-z_][\w.]*):(?P<attr>[A-Za-z_][\w.]*)(?P<call>\(\))?$")


class TargetError(Exception):
    """The target cannot be served; the message is one line meant for the user."""


@dataclasses.dataclass(frozen=True)
class App:
    """A python-socketio server and the WSGI callable that serves it."""

    server: Any
    wsgi: Callable[..., Any]

    @property
    def engineio_path(self) -> str:
        """The URL path of the Engine.IO endpoint (``/socket.io/`` unless the app says)."""
        for holder in (self.wsgi, getattr(self.wsgi, "wsgi_app", None)):
            path = getattr(holder, "engineio_path", None)
            if isinstance(path, str):
                return path
        return "/socket.io/"


def load(target: object) -> App:
    """Import ``target`` if it is a string, then find its python-socketio Server.

    Raises TargetError with a one-line message on any user mistake.
    """
    obj = import_target(target) if isinstance(target, str) else target
    return as_app(obj, target if isinstance(target, str) else type(obj).__name__)


def import_target(target: str) -> object:
    """Import ``module:attr`` (or call ``module:factory()``) and return the object."""
    match = _TARGET.match(target)
    if match is None:
        raise TargetError(f"bad target {target!r}: expected MODULE:ATTRIBUTE or MODULE:FACTORY()")
    module_name, attr_path = match["module"], match["attr"]
    if module_name.split(".")[0] in own.PACKAGES:
        raise TargetError(f"bad target {target!r}: {module_name.split('.')[0]!r} is the name of "
                          "sticky-cluster's own package; rename your module")
    if "" not in sys.path:
        sys.path.insert(0, "")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise TargetError(f"cannot import {module_name!r}: no module named {exc.name!r}") from None
        raise TargetError(f"importing {module_name!r} failed: {type(exc).__name__}: {exc}") from exc
    except Exception as exc:
        raise TargetError(f"importing {module_name!r} failed: {type(exc).__name__}: {exc}") from exc
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
            raise TargetError(f"{target!r}: the factory raised {type(exc).__name__}: {exc}") from exc
    return obj


def as_app(obj: object, label: str) -> App:
    """Find the python-socketio Server in ``obj`` and the WSGI app to serve it with."""
    import socketio

    if isinstance(obj, (socketio.AsyncServer, socketio.ASGIApp)):
        raise TargetError(f"{label}: an asyncio server (AsyncServer/ASGIApp) cannot run on the "
                          "eventlet workers; use socketio.Server(async_mode='eventlet')")
    if isinstance(obj, socketio.Server):
        return _checked(App(obj, socketio.WSGIApp(obj)), label)
    if isinstance(obj, socketio.WSGIApp):
        return _checked(App(obj.engineio_app, obj), label)
    extensions = getattr(obj, "extensions", None)
    if isinstance(extensions, dict) and "socketio" in extensions and callable(obj):
        server = getattr(extensions["socketio"], "server", None)
        if isinstance(server, socketio.Server):
            return _checked(App(server, obj), label)
        raise TargetError(f"{label}: Flask-SocketIO is not initialised on this app "
                          "(call SocketIO(app) or socketio.init_app(app))")
    if hasattr(obj, "server") and hasattr(obj, "init_app"):
        raise TargetError(f"{label}: name the Flask app, not the SocketIO object (e.g. app:app)")
    raise TargetError(f"{label}: expected a socketio.Server, a socketio.WSGIApp or a Flask app "
                      f"using Flask-SocketIO, got {type(obj).__name__}")


def _checked(app: App, label: str) -> App:
    mode = getattr(app.server, "async_mode", None)
    if mode != "eventlet":
        raise TargetError(f"{label}: the Server uses async_mode={mode!r}; "
                          "sticky-cluster's workers need async_mode='eventlet'")
    return app
