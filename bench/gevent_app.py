"""``bench.app`` in gevent mode: the same events on ``socketio.Server(async_mode="gevent")``.

Served by the cluster's gevent workers (``bench.gevent_app:app``: the ``gevent-relay`` and
``gevent-redis`` targets of ``bench.scale``).
"""
import socketio

from bench import memtrace
from bench.events import register

sio = socketio.Server(async_mode='gevent', cors_allowed_origins='*')
app = socketio.WSGIApp(sio)
register(sio)
memtrace.install()  # only with BENCH_TRACEMALLOC set (bench.memtrace)
