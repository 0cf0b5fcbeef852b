"""The chat app with a small message limit (100,000 bytes), as an ASGI and an aiohttp app:
the websocket rate tests need a burst (one message of the limit) well under a second."""
import socketio
from aiohttp import web

from tests.apps.asgi_chat import make_server

LIMIT = 100_000


def _small(sio: socketio.AsyncServer) -> socketio.AsyncServer:
    sio.eio.max_http_buffer_size = LIMIT
    return sio


asgi = socketio.ASGIApp(_small(make_server("asgi")))

aiohttp = web.Application()
_small(make_server("aiohttp")).attach(aiohttp)
