"""The benchmark's events, for any ``socketio.Server`` (eventlet or threading mode).

See :mod:`bench.app` for what each one does; :mod:`bench.asgi_app` has their asyncio twins.
"""
import os

import socketio


def register(sio: socketio.Server) -> None:
    """Give ``sio`` the benchmark's events: ``echo``, ``join``, ``bcast``, ``whoami``."""

    @sio.on('echo')
    def echo(sid, data):
        sio.emit('echo', data, to=sid)

    @sio.on('join')
    def join(sid, room):
        sio.enter_room(sid, room)
        return True

    @sio.on('bcast')
    def bcast(sid, data):
        sio.emit('bcast', data, room=data['room'])

    @sio.on('whoami')
    def whoami(sid, *args):
        return os.getpid()
