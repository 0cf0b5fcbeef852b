"""A Flask app using Flask-SocketIO, served through a factory: ``tests.apps.flaskapp:create_app()``."""
import os

from flask import Flask
from flask_socketio import SocketIO, emit, join_room

socketio = SocketIO()


def create_app() -> Flask:
    app = Flask(__name__)
    socketio.init_app(app, async_mode="eventlet")
    return app


@socketio.on("whoami")
def whoami(data=None):
    return {"pid": os.getpid()}


@socketio.on("join")
def join(room):
    join_room(room)
    return {"pid": os.getpid()}


@socketio.on("shout")
def shout(data):
    emit("heard", {"message": data["message"], "from_pid": os.getpid()}, to=data["room"])
    return "ok"
