"""A tiny chat room: open http://127.0.0.1:5000 in two browsers and talk.

Each page shows which worker process serves it; messages reach every worker through
the cluster's adapter. Run it with ``make demo`` or
``sticky-cluster run examples.chat:sio --workers 4 --bind 127.0.0.1:5000``.
"""
import os

import socketio

sio = socketio.Server(async_mode="eventlet")
app = socketio.WSGIApp(sio, static_files={"/": os.path.join(os.path.dirname(__file__), "chat.html")})


@sio.event
def connect(sid, environ, auth=None):
    sio.emit("joined", {"worker": os.getpid()}, to=sid)


@sio.event
def say(sid, text):
    sio.emit("said", {"text": str(text)[:500], "worker": os.getpid()})
