"""An app that brings its own RedisManager, built at import (so before the fork)."""
import os

import socketio

sio = socketio.Server(async_mode="eventlet",
                      client_manager=socketio.RedisManager(os.environ["TEST_REDIS_URL"],
                                                           channel="own-manager"))


@sio.event
def join(sid, room):
    sio.enter_room(sid, room)
    return {"pid": os.getpid()}


@sio.event
def shout(sid, data):
    sio.emit("heard", {"message": data["message"], "from_pid": os.getpid()}, room=data["room"])
    return "ok"


@sio.event
def whoami(sid, data=None):
    return {"pid": os.getpid()}
