"""``bench.app`` in threading mode: the same events on ``socketio.Server(async_mode="threading")``.

Served by one ``gunicorn -k gthread -w 1 --threads 100`` process (the threading baseline,
:class:`bench.targets.Gthread`, what python-socketio and Flask-SocketIO document for this
mode) and by the cluster's threading workers (``bench.threading_app:app``).
"""
import socketio

from bench.events import register

sio = socketio.Server(async_mode='threading', cors_allowed_origins='*')
app = socketio.WSGIApp(sio)
register(sio)
