"""What the embedded relay's two managers share: set-up, encoding, addressing.

:class:`workers.managers.RelayManager` (eventlet, gevent) and
:class:`workers.async_managers.RelayManager` (asyncio) are twins with the same names,
as python-socketio's ``PubSubManager`` and ``AsyncPubSubManager`` are; they differ only
in how they wait for a delivery. Everything else is here, once: the ``host_id`` shaped
like one of this worker's sids (so that an ack finds its way back), the channel
message that carries a publish (addressed to one worker when the message names one of
its sids), and the re-publish of an emit that was addressed here by mistake.

The bytes a relay carries are python-socketio's own: ``_encode`` is what
``RedisManager._publish`` puts on the wire (``self.json.dumps(data)``, the server's
JSON module, as a Redis client encodes it), and a delivery is handed to
``PubSubManager._thread`` undecoded, which decodes it with ``self.json.loads`` as it
does a Redis message. An emit behaves the same through either adapter.
"""
from __future__ import annotations

from typing import Any, Callable

from cluster.protocol import frames, sids
from cluster.protocol.frames import Kind


class RelayBase:
    """Mixin for a pub/sub manager whose bus is the master; put it first in the bases.

    The manager calls :meth:`_join_relay` in its ``__init__``, :meth:`_relay` as its
    ``_publish`` and :meth:`_relay_if_misaddressed` after its ``_handle_emit``; its
    ``_listen`` yields the delivered payloads as they came.
    """

    name = "sticky-relay"
    host_id: str
    json: Any  # the server's JSON module, set by python-socketio's ``set_server``

    def _join_relay(self, link: Any, tag: int, deliver: Callable[[bytes], object]) -> None:
        """Relay through ``link`` as the worker tagged ``tag``; ``deliver`` takes deliveries."""
        self._link = link
        self._tag = tag
        self.host_id = sids.make_sid(sids.sid_prefix(tag))
        link.on_deliver = deliver

    def _encode(self, message: dict[str, Any]) -> bytes:
        """``message`` as python-socketio's ``RedisManager`` publishes it (as bytes)."""
        encoded = self.json.dumps(message)
        return encoded if isinstance(encoded, bytes) else encoded.encode("utf-8")

    def _relay(self, message: dict[str, Any]) -> None:
        """Send the pub/sub ``message`` to the master (to one worker, or to all)."""
        self._link.send(*relay_message(message, self._encode(message), self._tag))

    def _relay_if_misaddressed(self, message: dict[str, Any]) -> None:
        """Send an emit that was addressed here alone to every worker, if it was a mistake."""
        if misaddressed(self, message, self._tag):
            self._link.send(Kind.PUBLISH, self._encode(message))


def relay_message(data: dict[str, Any], payload: bytes, own_tag: int) -> tuple[Kind, bytes]:
    """The channel message that relays ``payload`` (the pub/sub message ``data``, encoded)
    from worker ``own_tag``.

    A message for one sid of another worker is addressed to that worker alone.
    """
    tag = _addressee(data, own_tag)
    if tag is None:
        return Kind.PUBLISH, payload
    return Kind.PUBLISH_TO, frames.addressed(tag, payload)


def _addressee(message: dict[str, Any], own_tag: int) -> int | None:
    """The tag of the one other worker ``message`` is for; None: every worker."""
    method = message.get("method")
    if method == "callback":
        address = message.get("host_id")
    elif method == "emit":
        address = message.get("room")
    else:  # disconnect, enter_room, leave_room name a sid; close_room has none
        address = message.get("sid")
    tag = sids.tag_of(address) if isinstance(address, str) else None
    return None if tag == own_tag else tag


def misaddressed(manager: Any, message: dict[str, Any], own_tag: int) -> bool:
    """Whether an emit relayed to this worker alone must go to every worker after all.

    It was addressed here by a room that looks like one of our sids but is not one
    (a room named like a sid, or a client that just left): others may have members.
    """
    room = message.get("room")
    return (message.get("host_id") != manager.host_id and isinstance(room, str)
            and sids.tag_of(room) == own_tag
            and not manager.is_sid_room(message.get("namespace") or "/", room))
