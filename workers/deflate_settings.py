"""The windows, memory and threshold of permessage-deflate, where a worker grants it.

Each client granted permessage-deflate keeps, for its whole session, a compressor for what
the server sends and an inflater for what it receives. With zlib's defaults (a 32 KB window,
``memLevel`` 8), as eventlet and wsproto (gevent, threading) make them, the compressor
allocates about 256 KB and the inflater a 32 KB window: measured on one worker with 2,000
browser-like clients, +100 KB per client once connected, +195 KB once sent a few 2 KB
messages (``python -m bench.deflate_cost``). The websockets library (uvicorn's websockets,
the asyncio workers') uses a 4 KB window (12 bits) and ``memLevel`` 5 by default, whose
compression its authors measured within a few per cent of zlib's defaults on JSON messages
at a fraction of the memory; every runtime here but aiohttp (which keeps its own) uses the
same, so a client costs about the same in each:

- the server's compressor: :data:`WINDOW_BITS` and :data:`MEM_LEVEL` (:func:`compressor`);
  its window is announced (``server_max_window_bits``), which RFC 7692 allows in any answer;
- the client's window: :data:`WINDOW_BITS` where the client's offer lets the server choose
  (``client_max_window_bits``, which browsers send); where it does not, the client may use
  up to 15 bits and the server inflates with that (:func:`window_bits`);
- a message shorter than :data:`THRESHOLD` goes out plain (RFC 7692 lets any message be
  sent uncompressed), as with Node's ``ws`` (Socket.IO's server): most Socket.IO messages
  are that small, compressing them saves a few bytes for a zlib call per recipient, and a
  client that is only ever sent such messages never has a compressor made for it
  (every runtime but aiohttp, which compresses every message; ASGI workers:
  :mod:`workers.asyncio.uvicorn_deflate`).
"""
from __future__ import annotations

import zlib

WINDOW_BITS = 12
"""The largest LZ77 window, in bits, of a compressor granted to a client (4 KB; zlib's
default is 15)."""

MEM_LEVEL = 5
"""zlib's ``memLevel`` of the server's compressors (their hash table and pending buffer;
default 8)."""

THRESHOLD = 1024
"""Messages shorter than this (bytes; characters of a text message) are sent uncompressed
(Node ``ws``'s ``perMessageDeflate.threshold`` default)."""


def sent_plain(message: bytes | str) -> bool:
    """Whether ``message`` goes out uncompressed (shorter than :data:`THRESHOLD`)."""
    return len(message) < THRESHOLD


def window_bits(offered: int | None) -> int:
    """The window, in bits, to answer an offer of ``offered`` bits with (``None``: no value
    offered)."""
    return WINDOW_BITS if offered is None else min(offered, WINDOW_BITS)


def compressor(bits: int) -> "zlib._Compress":
    """A raw-deflate compressor with a window of ``bits`` bits and :data:`MEM_LEVEL`."""
    return zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -bits, MEM_LEVEL)
