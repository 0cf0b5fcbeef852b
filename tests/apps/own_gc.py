"""An eventlet app that sets its own garbage collection thresholds at import: the worker
keeps them (workers.collector)."""
import gc

import eventlet  # noqa: F401  (the runtime this app is written for)
import socketio

gc.set_threshold(5000, 20, 20)

sio = socketio.Server(async_mode="eventlet")


@sio.event
def collector(sid, data=None):
    """The worker's garbage collector: its thresholds, and whether it froze the app's
    objects (no collection walks them)."""
    return {"thresholds": gc.get_threshold(),
            "app_frozen": not any(o is sio for o in gc.get_objects())}
