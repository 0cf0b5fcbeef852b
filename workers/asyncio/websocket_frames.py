"""Where the frames of a websocket stream begin, counted without reading their payloads.

The asyncio worker charges each websocket frame a fixed cost besides its bytes
(:data:`workers.limits.FRAME_COST`), as the eventlet worker does, but the servers'
websocket protocols parse the stream themselves: :class:`FrameCounter` walks the frame
headers of the bytes they are fed (RFC 6455 §5.2: 2 to 14 bytes, then the payload
length it gives), keeping at most a partial header between two chunks, and says where
in each chunk a frame begins. It neither unmasks nor keeps payloads.

Pure: bytes in, counts out; no I/O.
"""
from __future__ import annotations


class FrameCounter:
    """Counts the frames that begin in a client's websocket stream, chunk by chunk."""

    __slots__ = ("_header", "_payload_left")  # one per websocket

    def __init__(self) -> None:
        self._header = b""  # a frame header cut by the end of a chunk
        self._payload_left = 0  # bytes of the current frame's payload still to come

    def starts(self, data: bytes) -> list[int]:
        """Take the next bytes of the stream; return the offsets in them where frames begin."""
        found = []
        at = 0
        while at < len(data):
            if self._payload_left:
                taken = min(self._payload_left, len(data) - at)
                self._payload_left -= taken
                at += taken
                continue
            had = len(self._header)
            header = self._header + data[at:at + 14 - had]
            size = header_size(header)
            if size is None or len(header) < size:
                self._header = header
                break
            self._header = b""
            found.append(at - had)
            at += size - had
            self._payload_left = payload_length(header)
        return found


def header_size(header: bytes) -> int | None:
    """The length of the frame header that ``header`` begins, or None before its 2nd byte."""
    if len(header) < 2:
        return None
    code = header[1] & 0x7F
    extended = 2 if code == 126 else 8 if code == 127 else 0
    return 2 + extended + (4 if header[1] & 0x80 else 0)


def payload_length(header: bytes) -> int:
    """The payload length a whole frame header gives."""
    code = header[1] & 0x7F
    if code == 126:
        return int.from_bytes(header[2:4], "big")
    if code == 127:
        return int.from_bytes(header[2:10], "big")
    return code
