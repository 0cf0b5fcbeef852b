"""The app of the unicast tests (``tests.apps.unicast``) on an AsyncServer: the asyncio managers."""
import os

import socketio

sio = socketio.AsyncServer(async_mode="asgi", namespaces="*")
app = socketio.ASGIApp(sio)


@sio.on("whoami", namespace="*")
async def whoami(_namespace, sid, data=None):
    """Which worker serves this client, and its sid in this namespace."""
    return {"pid": os.getpid(), "sid": sid}


@sio.on("tell", namespace="*")
async def tell(namespace, sid, data):
    """Emit ``told`` to ``data['to']`` in ``data.get('namespace')`` (default: this one)."""
    await sio.emit("told", {"message": data["message"], "from_pid": os.getpid(), "from": sid},
                   to=data["to"], namespace=data.get("namespace", namespace))
    return "ok"


@sio.on("join", namespace="*")
async def join(namespace, sid, room):
    await sio.enter_room(sid, room, namespace=namespace)
    return {"pid": os.getpid()}


@sio.on("shout", namespace="*")
async def shout(namespace, sid, data):
    """Emit ``heard`` to ``data['room']``, skipping the sender when ``data['skip_me']``."""
    await sio.emit("heard", {"message": data["message"], "from_pid": os.getpid()},
                   room=data["room"], skip_sid=sid if data.get("skip_me") else None,
                   namespace=namespace)
    return "ok"


@sio.on("ask", namespace="*")
async def ask(namespace, sid, data):
    """Ask the client ``data['to']`` a question (``sio.call``) and return its answer."""
    answer = await sio.call("question", data["question"], to=data["to"], namespace=namespace,
                            timeout=10)
    return {"answer": answer, "pid": os.getpid()}
