"""A FastAPI app whose lifespan startup raises (its database is not there): FastAPI
reports the traceback as the lifespan's failure message, which uvicorn logs."""
import contextlib

import socketio
from fastapi import FastAPI

from tests.apps.asgi_chat import make_server


@contextlib.asynccontextmanager
async def lifespan(_app):
    raise ConnectionRefusedError("no database at db.internal:5432")
    yield  # noqa: unreachable - a lifespan is a generator


app = FastAPI(lifespan=lifespan)
app.mount("/", socketio.ASGIApp(make_server("asgi")))
