"""The chat app of the tests on aiohttp.

- ``app``: an aiohttp ``Application`` with an ``AsyncServer(async_mode="aiohttp")`` attached;
- ``sio``: a bare ``AsyncServer(async_mode="aiohttp")``: the worker attaches it to an
  Application of its own.
"""
from aiohttp import web

from tests.apps.asgi_chat import make_server

app = web.Application()
make_server("aiohttp").attach(app)


async def url(request: web.Request) -> web.Response:
    """The URL the app sees (behind a TLS-terminating proxy: https)."""
    return web.json_response({"url": str(request.url)})

app.router.add_get("/url", url)

sio = make_server("aiohttp")
