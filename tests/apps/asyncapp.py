"""An asyncio server, which the eventlet workers cannot serve."""
import socketio

sio = socketio.AsyncServer(async_mode="aiohttp")
