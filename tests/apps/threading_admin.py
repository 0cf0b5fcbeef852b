"""``tests.apps.admin`` in threading mode: instrumented for the Admin UI at import."""
import os

import socketio

sio = socketio.Server(async_mode="threading", cors_allowed_origins="*")
sio.instrument(auth=False, server_stats_interval=0.5)


@sio.event
def whoami(sid, data=None):
    """Which worker process serves this client."""
    return {"pid": os.getpid(), "sid": sid}
