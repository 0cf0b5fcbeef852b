"""The chat app of the tests on gevent: ``sio`` (a Server) and ``create_flask_app()`` (Flask-SocketIO)."""
import os

import socketio
from flask import Flask
from flask_socketio import SocketIO, emit, join_room
from gevent import monkey


def _events(sio: socketio.Server) -> None:
    """The events of ``tests.apps.chat``."""

    @sio.event
    def connect(sid, environ, auth=None):
        sio.save_session(sid, {"remote_addr": environ.get("REMOTE_ADDR"),
                               "url": f"{environ['wsgi.url_scheme']}://{environ.get('HTTP_HOST')}"})

    @sio.event
    def seen_url(sid, data=None):
        return sio.get_session(sid)["url"]

    @sio.event
    def whoami(sid, data=None):
        return {"pid": os.getpid(), "remote_addr": sio.get_session(sid)["remote_addr"], "sid": sid}

    @sio.event
    def join(sid, room):
        sio.enter_room(sid, room)
        return {"pid": os.getpid()}

    @sio.event
    def shout(sid, data):
        sio.emit("heard", {"message": data["message"], "from_pid": os.getpid()}, room=data["room"])
        return "ok"

    @sio.event
    def echo(sid, data):
        return data

    @sio.event
    def slow(sid, seconds=1.5):
        sio.sleep(seconds)
        return {"pid": os.getpid()}

    @sio.event
    def fail(sid, data=None):
        """An event handler with a bug (run in a greenlet of its own: nobody catches it)."""
        raise RuntimeError("handler failed on purpose")

    @sio.event
    def block(sid, seconds):
        """Block the whole worker (its hub) for ``seconds``: no heartbeat meanwhile."""
        monkey.get_original("time", "sleep")(seconds)
        return {"pid": os.getpid()}


sio = socketio.Server(async_mode="gevent", cors_allowed_origins="*")
_events(sio)


def create_flask_app() -> Flask:
    """A Flask app with Flask-SocketIO on gevent (its ``server`` gets the chat events)."""
    app = Flask(__name__)
    flask_socketio = SocketIO(app, async_mode="gevent", cors_allowed_origins="*")
    _events(flask_socketio.server)
    return app
