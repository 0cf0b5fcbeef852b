"""An app instrumented for the Socket.IO Admin UI at import, as python-socketio's docs show."""
import os

import socketio

sio = socketio.Server(async_mode="eventlet", cors_allowed_origins="*")
sio.instrument(auth=False, server_stats_interval=0.5)


@sio.event
def whoami(sid, data=None):
    """Which worker process serves this client."""
    return {"pid": os.getpid(), "sid": sid}
