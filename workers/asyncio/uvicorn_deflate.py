"""uvicorn's websockets-sansio protocol with :mod:`workers.deflate_settings`' threshold.

uvicorn grants permessage-deflate with the websockets library's extension, already with
:mod:`workers.deflate_settings`' windows and ``memLevel``; but that extension compresses
every message and makes each client's compressor as the websocket opens. Here, as in the
eventlet, gevent and threading workers, a message shorter than
:data:`~workers.deflate_settings.THRESHOLD` goes out plain and a client's compressor is made
for its first longer message (:class:`ThresholdDeflate`, granted by
:class:`ThresholdDeflateFactory`, which :func:`protocol_class` puts in uvicorn's protocol).
"""
from __future__ import annotations

import zlib
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.extensions.permessage_deflate import (PerMessageDeflate,
                                                      ServerPerMessageDeflateFactory)
from websockets.frames import Frame, Opcode

from .. import deflate_settings


class ThresholdDeflate(PerMessageDeflate):
    """The websockets library's permessage-deflate that sends a short message plain and
    makes its compressor at the first message it compresses."""

    def __init__(self, remote_no_context_takeover: bool, local_no_context_takeover: bool,
                 remote_max_window_bits: int, local_max_window_bits: int,
                 compress_settings: dict[Any, Any] | None = None) -> None:
        # Told "no context takeover", websockets makes no compressor here: see __getattr__.
        super().__init__(remote_no_context_takeover, True, remote_max_window_bits,
                         local_max_window_bits, compress_settings)
        self.local_no_context_takeover = local_no_context_takeover

    def __getattr__(self, name: str) -> Any:
        if name != "encoder":
            raise AttributeError(name)
        self.encoder = zlib.compressobj(wbits=-self.local_max_window_bits,
                                        **self.compress_settings)
        return self.encoder

    def encode(self, frame: Frame) -> Frame:
        if (frame.opcode in (Opcode.TEXT, Opcode.BINARY) and frame.fin
                and deflate_settings.sent_plain(frame.data)):
            return frame  # a whole message, short: plain (RSV1 not set)
        return super().encode(frame)


class ThresholdDeflateFactory(ServerPerMessageDeflateFactory):
    """The websockets library's server-side negotiation, granting :class:`ThresholdDeflate`."""

    def process_request_params(self, params: Any, accepted_extensions: Any) -> Any:
        # websockets' own negotiation; the extension it made (a compressor and an inflater,
        # ~0.5 µs) is replaced by one with the same settings.
        answer, granted = super().process_request_params(params, accepted_extensions)
        return answer, ThresholdDeflate(
            granted.remote_no_context_takeover, granted.local_no_context_takeover,
            granted.remote_max_window_bits, granted.local_max_window_bits,
            granted.compress_settings)


class ThresholdDeflateProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websockets-sansio protocol granting :class:`ThresholdDeflateFactory`'s
    permessage-deflate (use it only with ``ws_per_message_deflate`` on)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.conn.available_extensions = [ThresholdDeflateFactory(
            server_max_window_bits=deflate_settings.WINDOW_BITS,
            client_max_window_bits=deflate_settings.WINDOW_BITS,
            compress_settings={"memLevel": deflate_settings.MEM_LEVEL})]


def protocol_class(ws_protocol_class: Any) -> Any:
    """The websocket protocol class to grant permessage-deflate with, in place of uvicorn's
    ``ws_protocol_class``: :class:`ThresholdDeflateProtocol` in place of websockets-sansio
    (uvicorn's choice when the websockets library is new enough), any other unchanged."""
    return (ThresholdDeflateProtocol if ws_protocol_class is WebSocketsSansIOProtocol
            else ws_protocol_class)
