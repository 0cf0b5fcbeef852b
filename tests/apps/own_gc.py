"""An eventlet app that sets its own garbage collection thresholds at import: the worker
keeps them (workers.collector)."""
import gc

import eventlet  # noqa: F401  (the runtime this app is written for)
import socketio

from tests.apps import gc_state

gc.set_threshold(5000, 20, 20)

sio = socketio.Server(async_mode="eventlet")


@sio.event
def collector(sid, data=None):
    """The worker's garbage collector (:func:`tests.apps.gc_state.of`)."""
    return gc_state.of(sio)
