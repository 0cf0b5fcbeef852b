"""The worker runtimes: which one a target gets, loaded in this process (the loader finds the
Socket.IO server inside what the target names). Targets served by a real cluster:
tests/e2e/test_runtimes.py."""
from __future__ import annotations

import pytest

from workers import loader


@pytest.mark.parametrize("target, runtime", [
    ("tests.apps.chat:sio", "eventlet"),
    ("tests.apps.flaskapp:create_app()", "eventlet"),
    ("tests.apps.gevent_chat:sio", "gevent"),
    ("tests.apps.gevent_chat:create_flask_app()", "gevent"),
    ("tests.apps.asgi_chat:sio", "asyncio"),
    ("tests.apps.asgi_chat:asgi", "asyncio"),
    ("tests.apps.fastapi_chat:app", "asyncio"),
    ("tests.apps.aiohttp_chat:app", "asyncio"),
    ("tests.apps.aiohttp_chat:sio", "asyncio"),
    ("tests.apps.threading_chat:app", "threading"),
    ("tests.apps.threading_chat:sio", "threading"),
    ("tests.apps.threading_chat:wsgi", "threading"),
])
def test_the_target_decides_the_runtime(target, runtime):
    app = loader.load(target)
    assert app.runtime == runtime
    assert sum(x is not None for x in (app.wsgi, app.asgi, app.aiohttp)) == 1


def test_a_starlette_app_mounted_deep_is_found():
    import socketio
    from starlette.applications import Starlette
    from starlette.routing import Mount

    sio = socketio.AsyncServer(async_mode="asgi")
    inner = Starlette(routes=[Mount("/rt", app=socketio.ASGIApp(sio))])
    outer = Starlette(routes=[Mount("/api", app=inner)])
    app = loader.load(outer)
    assert (app.runtime, app.server, app.asgi) == ("asyncio", sio, outer)


def test_an_asgi_middleware_around_the_socketio_app_is_served_whole():
    import socketio
    from starlette.middleware.cors import CORSMiddleware

    sio = socketio.AsyncServer(async_mode="asgi")
    wrapped = CORSMiddleware(socketio.ASGIApp(sio), allow_origins=["*"])
    app = loader.load(wrapped)
    assert (app.runtime, app.server, app.asgi) == ("asyncio", sio, wrapped)
