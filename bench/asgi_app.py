"""``bench.app`` as an asyncio app: the same events on a ``socketio.AsyncServer`` under ASGI.

Served by one uvicorn process (the asyncio baseline, :class:`bench.targets.Uvicorn`)
and by the cluster's asyncio workers (``bench.asgi_app:app``).
"""
import os

import socketio

from bench import memtrace

sio = socketio.AsyncServer(async_mode='asgi', cors_allowed_origins='*')
app = socketio.ASGIApp(sio)
memtrace.install()  # only with BENCH_TRACEMALLOC set (bench.memtrace)


@sio.on('echo')
async def echo(sid, data):
    await sio.emit('echo', data, to=sid)


@sio.on('join')
async def join(sid, room):
    await sio.enter_room(sid, room)
    return True


@sio.on('bcast')
async def bcast(sid, data):
    await sio.emit('bcast', data, room=data['room'])


@sio.on('whoami')
async def whoami(sid, *args):
    return os.getpid()
