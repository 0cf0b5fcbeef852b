"""``bench.app`` in threading mode: the same events on ``socketio.Server(async_mode="threading")``.

Served by one ``gunicorn -k gthread -w 1 --threads 100`` process (the threading baseline,
:class:`bench.targets.Gthread`, what python-socketio and Flask-SocketIO document for this
mode) and by the cluster's threading workers (``bench.threading_app:app``).
"""
import os

import socketio

sio = socketio.Server(async_mode='threading', cors_allowed_origins='*')
app = socketio.WSGIApp(sio)


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
