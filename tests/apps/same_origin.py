"""An app as a user writes it: python-socketio's default CORS policy (a browser's
``Origin`` must match the ``Host`` the server sees). It says who served a request."""
import os

import socketio

sio = socketio.Server(async_mode="eventlet")


@sio.event
def connect(sid, environ, auth=None):
    sio.save_session(sid, {"remote_addr": environ.get("REMOTE_ADDR")})


@sio.event
def whoami(sid, data=None):
    """Which worker process serves this client, and what address it sees."""
    return {"pid": os.getpid(), "remote_addr": sio.get_session(sid)["remote_addr"]}
