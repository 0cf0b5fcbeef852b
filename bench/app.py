"""The benchmark Socket.IO application, shared by the standalone server and the cluster.

Events (all in namespace ``/``):

* ``echo``   -- ``sio.emit('echo', data, to=sid)``: a server emit back to the sender
  (deliberately not an ack return, so the reply travels the emit path).
* ``join``   -- enter the room named by the argument; returns ``True`` (as an ack if
  the client asked for one), so a client knows when it is in the room.
* ``bcast``  -- ``data`` is a dict carrying ``room`` and the sender's timestamp;
  ``sio.emit('bcast', data, room=room)``.
* ``whoami`` -- returns ``os.getpid()`` (as an ack), to see which process serves a client.

Nothing is logged per message. With ``BENCH_REDIS_URL`` set (the nginx set-up of
``bench.run``), the Server brings its own ``RedisManager``; the cluster runs it unset.
"""
import os

import socketio

from bench import memtrace
from bench.events import register

_redis_url = os.environ.get('BENCH_REDIS_URL')
sio = socketio.Server(async_mode='eventlet', cors_allowed_origins='*',
                      client_manager=socketio.RedisManager(_redis_url, channel='bench-nginx')
                      if _redis_url else None)
app = socketio.WSGIApp(sio)
register(sio)
memtrace.install()  # only with BENCH_TRACEMALLOC set (bench.memtrace)
