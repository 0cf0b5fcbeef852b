"""The chat app of the tests in threading mode, written the Flask-SocketIO way.

``app`` is a Flask app with Flask-SocketIO in threading mode (its handlers use Flask's
``request`` and Flask-SocketIO's ``emit``/``join_room``); ``sio`` is a plain
``socketio.Server(async_mode="threading")`` and ``wsgi`` a ``socketio.WSGIApp`` over it,
with the same events.
"""
import ctypes
import os
import threading
import time

import socketio
from flask import Flask, request
from flask_socketio import SocketIO, emit, join_room


def _hold_the_interpreter(seconds: int) -> None:
    """Block the whole worker (every thread, the GIL held) as CPU-bound C code would: libc's
    ``sleep`` called without releasing the GIL (``PyDLL``)."""
    ctypes.PyDLL(None).sleep(int(seconds))


app = Flask(__name__)
socketio_ext = SocketIO(app, async_mode="threading", cors_allowed_origins="*")


@app.route("/hello")
def hello():
    return {"pid": os.getpid(), "remote_addr": request.remote_addr}


@app.route("/url")
def url():
    """The URL the app sees (behind a TLS-terminating proxy: https)."""
    return {"url": request.url}


@socketio_ext.on("seen_url")
def seen_url(data=None):
    """The scheme and host the app saw at connect (behind a TLS-terminating proxy: https)."""
    return request.host_url.rstrip("/")


@socketio_ext.on("whoami")
def whoami(data=None):
    """Which worker process serves this client, and what address it sees."""
    return {"pid": os.getpid(), "remote_addr": request.remote_addr, "sid": request.sid}


@socketio_ext.on("join")
def join(room):
    join_room(room)
    return {"pid": os.getpid()}


@socketio_ext.on("shout")
def shout(data):
    """Broadcast ``data['message']`` to ``data['room']`` from this worker."""
    emit("heard", {"message": data["message"], "from_pid": os.getpid()}, to=data["room"])
    return "ok"


@socketio_ext.on("echo")
def echo(data):
    return data


@socketio_ext.on("thread_name")
def thread_name(data=None):
    """The name of the thread this event runs on."""
    return threading.current_thread().name


@socketio_ext.on("slow")
def slow(seconds=1.5):
    """Answer after ``seconds``, without blocking the worker: a request still in flight."""
    time.sleep(seconds)
    return {"pid": os.getpid()}


@socketio_ext.on("block")
def block(seconds):
    _hold_the_interpreter(seconds)
    return {"pid": os.getpid()}


sio = socketio.Server(async_mode="threading", cors_allowed_origins="*")
wsgi = socketio.WSGIApp(sio)


@sio.event
def connect(sid, environ, auth=None):
    sio.save_session(sid, {"remote_addr": environ.get("REMOTE_ADDR")})


@sio.on("whoami")
def sio_whoami(sid, data=None):
    return {"pid": os.getpid(), "remote_addr": sio.get_session(sid)["remote_addr"], "sid": sid}


@sio.on("echo")
def sio_echo(sid, data):
    return data


quick_pings = socketio.WSGIApp(socketio.Server(async_mode="threading", ping_interval=1,
                                               ping_timeout=5))
"""A threading server that pings every second (the pings test)."""
