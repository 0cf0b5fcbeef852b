"""The chat app of the tests as an asyncio app (``make_server``), as plain ASGI targets.

- ``sio``: a bare ``socketio.AsyncServer(async_mode="asgi")``;
- ``asgi``: a ``socketio.ASGIApp`` wrapping another ASGI app (``other_asgi_app``);
- ``broken_lifespan``: one whose lifespan startup fails.

FastAPI and aiohttp targets are in ``fastapi_chat`` and ``aiohttp_chat`` (each worker
imports only what its target needs).
"""
import asyncio
import os
import time

import socketio

from tests.apps import gc_state


def make_server(async_mode: str) -> socketio.AsyncServer:
    """A server with the events of ``tests.apps.chat``."""
    sio = socketio.AsyncServer(async_mode=async_mode, cors_allowed_origins="*")

    @sio.event
    async def connect(sid, environ, auth=None):
        await sio.save_session(sid, {
            "remote_addr": environ.get("REMOTE_ADDR"),
            "url": f"{environ['wsgi.url_scheme']}://{environ.get('HTTP_HOST')}"})

    @sio.event
    async def seen_url(sid, data=None):
        """The scheme and host the app saw at connect (behind a TLS-terminating proxy: https)."""
        return (await sio.get_session(sid))["url"]

    @sio.event
    async def whoami(sid, data=None):
        """Which worker process serves this client, and what address it sees."""
        session = await sio.get_session(sid)
        return {"pid": os.getpid(), "remote_addr": session["remote_addr"], "sid": sid}

    @sio.event
    async def collector(sid, data=None):
        """The worker's garbage collector (:func:`tests.apps.gc_state.of`)."""
        return gc_state.of(sio)

    @sio.event
    async def join(sid, room):
        await sio.enter_room(sid, room)
        return {"pid": os.getpid()}

    @sio.event
    async def shout(sid, data):
        """Broadcast ``data['message']`` to ``data['room']`` from this worker."""
        await sio.emit("heard", {"message": data["message"], "from_pid": os.getpid()},
                       room=data["room"])
        return "ok"

    @sio.event
    async def echo(sid, data):
        return data

    @sio.event
    async def slow(sid, seconds=1.5):
        """Answer after ``seconds``, without blocking the worker: a request still in flight."""
        await asyncio.sleep(seconds)
        return {"pid": os.getpid()}

    @sio.event
    async def block(sid, seconds):
        """Block the whole event loop for ``seconds``: no heartbeat meanwhile."""
        time.sleep(seconds)
        return {"pid": os.getpid()}

    return sio


async def _plain_site(scope, receive, send):
    """The other ASGI app: answers every other request with who served it."""
    if scope["type"] != "http":
        return
    body = f"plain {os.getpid()} {scope['client'][0]}".encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


sio = make_server("asgi")
asgi = socketio.ASGIApp(make_server("asgi"), other_asgi_app=_plain_site)


async def _failing_lifespan(scope, receive, send):
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "no database"})


broken_lifespan = socketio.ASGIApp(make_server("asgi"), other_asgi_app=_failing_lifespan)
"""An app whose lifespan startup fails: its workers cannot boot."""
