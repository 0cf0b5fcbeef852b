"""An asyncio worker's emit to many recipients (:class:`workers.async_managers.InlineFanOut`):
the packets python-socketio would send, to the recipients it would pick, without a task per
recipient; one recipient's failure is logged and the others are still served. On a real
``AsyncServer``; only the sending of an Engine.IO packet is recorded instead of queued."""
from __future__ import annotations

import asyncio
import logging

import socketio
from socketio.async_manager import AsyncManager

from workers.async_managers import InlineFanOut


def server_with(manager: AsyncManager, broken: str | None = None):
    """An AsyncServer whose Engine.IO sends are recorded as (eio_sid, encoded packet);
    a send to ``broken`` raises."""
    sio = socketio.AsyncServer(async_mode="asgi", client_manager=manager)
    sent: list[tuple[str, object]] = []

    async def send(eio_sid, pkt):
        if eio_sid == broken:
            raise ConnectionResetError("gone")
        sent.append((eio_sid, pkt.encode()))

    sio._send_eio_packet = send
    return sio, sent


async def room_of(manager: AsyncManager, count: int) -> list[str]:
    sids = []
    for index in range(count):
        sid = await manager.connect(f"eio{index}", "/")
        await manager.enter_room(sid, "/", "r")
        sids.append(sid)
    return sids


def emitted(manager_class: type[AsyncManager], **emit) -> list[tuple[str, object]]:
    async def scenario():
        sio, sent = server_with(manager_class())
        sids = await room_of(sio.manager, 4)
        if emit.get("skip_sid") == "first":
            emit["skip_sid"] = sids[0]
        await sio.emit("news", room="r", **emit)
        return sent
    return asyncio.run(scenario())


def test_it_sends_what_python_socketio_sends_to_whom_it_sends():
    for emit in [{"data": {"a": 1}}, {"data": ("two", "args")}, {"data": None},
                 {"data": b"\x00binary\xff"}, {"data": [1, b"\x01"]},
                 {"data": "x", "skip_sid": "first"}]:
        ours = emitted(type("Fanned", (InlineFanOut,), {}), **emit)
        theirs = emitted(AsyncManager, **emit)
        assert sorted(ours, key=repr) == sorted(theirs, key=repr), emit
        assert ours, emit


def test_a_failed_recipient_is_logged_and_the_others_are_served(caplog):
    async def scenario():
        sio, sent = server_with(type("Fanned", (InlineFanOut,), {})(), broken="eio1")
        await room_of(sio.manager, 4)
        await sio.emit("news", "hello", room="r")
        return sent

    with caplog.at_level(logging.ERROR, logger="sticky_cluster.worker"):
        sent = asyncio.run(scenario())
    assert sorted(eio_sid for eio_sid, _ in sent) == ["eio0", "eio2", "eio3"]
    assert "an emit to" in caplog.text and "ConnectionResetError" in caplog.text
