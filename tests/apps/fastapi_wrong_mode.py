"""A FastAPI app with a Socket.IO server mounted that was not made for ASGI: the
AsyncServer's default async_mode is aiohttp's when aiohttp is installed."""
import socketio
from fastapi import FastAPI

sio = socketio.AsyncServer()
app = FastAPI()
app.mount("/", socketio.ASGIApp(sio))
