"""The app the tests serve: it tells who served a request, and relays rooms."""
import os

import eventlet
import eventlet.patcher
import socketio

from tests.apps import gc_state

sio = socketio.Server(async_mode="eventlet", cors_allowed_origins="*")
app = socketio.WSGIApp(sio)


@sio.event
def connect(sid, environ, auth=None):
    sio.save_session(sid, {"remote_addr": environ.get("REMOTE_ADDR"),
                           "url": f"{environ['wsgi.url_scheme']}://{environ.get('HTTP_HOST')}"})


@sio.event
def seen_url(sid, data=None):
    """The scheme and host the app saw at connect (behind a TLS-terminating proxy: https)."""
    return sio.get_session(sid)["url"]


@sio.event
def whoami(sid, data=None):
    """Which worker process serves this client, and what address it sees."""
    return {"pid": os.getpid(), "remote_addr": sio.get_session(sid)["remote_addr"], "sid": sid}


@sio.event
def collector(sid, data=None):
    """The worker's garbage collector (:func:`tests.apps.gc_state.of`)."""
    return gc_state.of(sio)


@sio.event
def join(sid, room):
    sio.enter_room(sid, room)
    return {"pid": os.getpid()}


@sio.event
def shout(sid, data):
    """Broadcast ``data['message']`` to ``data['room']`` from this worker."""
    sio.emit("heard", {"message": data["message"], "from_pid": os.getpid()}, room=data["room"])
    return "ok"


@sio.event
def echo(sid, data):
    return data


@sio.event
def fail(sid, data=None):
    """An event handler with a bug."""
    raise RuntimeError("handler failed on purpose")


@sio.event
def slow(sid, seconds=1.5):
    """Answer after ``seconds``, without blocking the worker: a request still in flight."""
    eventlet.sleep(seconds)
    return {"pid": os.getpid()}


@sio.event
def block(sid, seconds):
    """Block the whole worker for ``seconds`` (CPU-bound code would): no heartbeat meanwhile."""
    eventlet.patcher.original("time").sleep(seconds)
    return {"pid": os.getpid()}
