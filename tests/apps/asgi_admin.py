"""``tests.apps.admin`` as an ASGI app: an AsyncServer instrumented at import."""
import os

import socketio

sio = socketio.AsyncServer(async_mode="asgi", cors_allowed_origins="*")
sio.instrument(auth=False, server_stats_interval=0.5)
app = socketio.ASGIApp(sio)


@sio.event
async def whoami(sid, data=None):
    """Which worker process serves this client."""
    return {"pid": os.getpid(), "sid": sid}
