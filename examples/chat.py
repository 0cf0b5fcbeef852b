"""A tiny chat room: open http://127.0.0.1:5000 in two browsers (or run two terminal clients).

Each page shows which worker process serves it, and every message the worker that
sent it; messages reach every worker through the cluster's adapter. Run it with
``make demo`` or ``sticky-cluster run examples.chat:app --workers 4 --bind 127.0.0.1:5000``
from the repository's root. ``app`` serves the page at ``/`` and the Socket.IO browser
client from ``examples/static`` (no CDN: the demo works offline); ``sio`` alone would
serve Socket.IO only. ``examples/chat_client.py`` is the same chat in a terminal.
"""
import os

import socketio

HERE = os.path.dirname(os.path.abspath(__file__))

sio = socketio.Server(async_mode="eventlet")
app = socketio.WSGIApp(sio, static_files={
    "/": os.path.join(HERE, "chat.html"),
    "/static": os.path.join(HERE, "static"),
})


@sio.event
def connect(sid, environ, auth=None):
    sio.emit("joined", {"worker": os.getpid()}, to=sid)


@sio.event
def say(sid, text):
    sio.emit("said", {"text": str(text)[:500], "worker": os.getpid()})
