"""The chat app of the tests mounted in a FastAPI app, which has a route of its own."""
import os

import socketio
from fastapi import FastAPI

from tests.apps.asgi_chat import make_server

app = FastAPI()


@app.get("/hello")
async def hello():
    return {"pid": os.getpid()}


app.mount("/", socketio.ASGIApp(make_server("asgi")))
