"""The limits tests' app (``tests.apps.limits``) on gevent: short pings, handlers run inside
the request, and handlers and a plain WSGI route that raise (their errors must never reach
a client)."""
import os

import socketio

sio = socketio.Server(async_mode="gevent", ping_interval=3, ping_timeout=10,
                      async_handlers=False)


def plain(environ, start_response):
    """Any path but /socket.io/: raises, as a broken route of the user's app would."""
    raise RuntimeError("secret internal detail from the app")


app = socketio.WSGIApp(sio, wsgi_app=plain)


@sio.event
def whoami(sid, data=None):
    return {"pid": os.getpid()}


@sio.event
def echo(sid, data=None):
    return data


@sio.event
def fail(sid, data=None):
    raise RuntimeError("secret internal detail from a handler")
