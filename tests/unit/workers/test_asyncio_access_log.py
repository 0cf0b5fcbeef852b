"""The asyncio workers' access log lines (pure: an ASGI app driven by hand, no server)."""
from __future__ import annotations

import asyncio
import io

from workers.access_log import LineWriter
from workers.asyncio.access_log import AsgiAccessLog, asgi_environ

FORMAT = '%(h)s "%(r)s" %(s)s %(b)s "%(a)s" slot=%(slot)s transport=%(transport)s'


def scope(kind: str = "http", path: str = "/socket.io/", query: bytes = b"EIO=4&transport=polling",
          headers: tuple = ((b"user-agent", b"test/1"),)) -> dict:
    return {"type": kind, "method": "GET", "path": path, "query_string": query,
            "http_version": "1.1", "client": ("127.0.0.7", 5000), "headers": list(headers)}


def served(app, request: dict) -> str:
    stream = io.StringIO()
    logged = AsgiAccessLog(app, LineWriter(stream, FORMAT, 3))

    async def receive() -> dict:
        return {"type": "http.request"}

    async def send(message: dict) -> None:
        pass

    asyncio.run(logged(request, receive, send))
    return stream.getvalue()


def test_an_http_request_has_its_status_and_body_length():
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"abc", "more_body": True})
        await send({"type": "http.response.body", "body": b"de"})

    assert served(app, scope()) == ('127.0.0.7 "GET /socket.io/?EIO=4&transport=polling HTTP/1.1" '
                                    '200 5 "test/1" slot=3 transport=polling\n')


def test_a_websocket_is_101_once_accepted_403_if_closed_before():
    async def accepted(scope, receive, send):
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": "3probe"})

    async def refused(scope, receive, send):
        await send({"type": "websocket.close", "code": 1008})

    request = scope("websocket", query=b"EIO=4&transport=websocket&sid=x")
    assert ' 101 - "test/1" slot=3 transport=websocket\n' in served(accepted, request)
    assert ' 403 - ' in served(refused, request)


def test_what_the_client_sent_is_escaped():
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    line = served(app, scope(path='/x\n127.0.0.9 forged"', query=b""))
    assert line.count("\n") == 1 and '"GET /x\\x0a127.0.0.9 forged\\" HTTP/1.1" 404 -' in line


def test_lifespan_passes_through_unlogged():
    seen = []

    async def app(scope, receive, send):
        seen.append(scope["type"])

    assert served(app, {"type": "lifespan"}) == "" and seen == ["lifespan"]


def test_environ_names_the_request_as_wsgi_would():
    environ = asgi_environ(scope(headers=((b"referer", b"http://a/"), (b"upgrade", b"websocket"))))
    assert environ == {"REMOTE_ADDR": "127.0.0.7", "REQUEST_METHOD": "GET",
                       "PATH_INFO": "/socket.io/", "QUERY_STRING": "EIO=4&transport=polling",
                       "SERVER_PROTOCOL": "HTTP/1.1", "HTTP_REFERER": "http://a/",
                       "HTTP_UPGRADE": "websocket"}
