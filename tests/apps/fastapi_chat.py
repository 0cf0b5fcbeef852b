"""The chat app of the tests mounted in a FastAPI app, which has a route of its own.

``sio`` is the bare Socket.IO server: a target that names it serves it without the routes."""
import os

import socketio
from fastapi import FastAPI, Request

from tests.apps.asgi_chat import make_server

app = FastAPI()


@app.get("/hello")
async def hello():
    return {"pid": os.getpid()}


@app.get("/url")
async def url(request: Request):
    """The URL the app sees (behind a TLS-terminating proxy: https)."""
    return {"url": str(request.url)}


sio = make_server("asgi")
app.mount("/", socketio.ASGIApp(sio))
