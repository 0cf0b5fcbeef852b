"""permessage-deflate is granted only with ``--websocket-deflate``, in every runtime.

Every browser offers it; a worker that grants it keeps a compressor and an inflater per
client (docs/limits.md) and compresses each message once per recipient. By default the
offer is declined, as Socket.IO's own Node server does, and the session goes on
uncompressed. With the option, every runtime grants it (tests/e2e/test_runtime_support.py),
with a 4 KB window for the server and, where the offer lets it choose, for the client
(``workers.deflate_settings``; aiohttp keeps its own, a window the client chooses).
"""
from __future__ import annotations

import json
import os
import zlib

import pytest

from cluster.protocol.support import SERVERS
from tests.support import rawclient
from tests.support.masters import RUNTIME_TARGETS

BROWSER_OFFER = "permessage-deflate; client_max_window_bits"
"""What Chromium and Firefox offer."""

SMALL_WINDOW_SERVERS = [server for server in SERVERS if server != "aiohttp"]
"""The servers whose deflate windows are ``workers.deflate_settings``' (uvicorn's websockets
uses the same by default)."""

BEYOND_SMALL_WINDOW = os.urandom(5000).hex()
"""10,000 characters that no 4 KB window compresses: sent twice in one message, the second
copy is a back-reference 10,000 bytes away (a 32 KB window's)."""


@pytest.mark.parametrize("server", SERVERS)
def test_a_browsers_deflate_offer_is_declined_by_default(start_cluster, server):
    cluster = start_cluster(RUNTIME_TARGETS[server], workers=1)
    sock, head = rawclient.upgrade(cluster.port, "127.0.0.2", extensions=BROWSER_OFFER,
                                   timeout=30)
    with sock:
        assert b"sec-websocket-extensions" not in head.lower(), head
        opcode, payload = rawclient.read_frame(sock)
        assert (opcode, payload[:2]) == (1, b"0{"), payload  # the open packet, plain text
        sock.sendall(rawclient.frame(1, b"40"))
        opcode, payload = rawclient.read_frame(sock)
        assert (opcode, payload[:3]) == (1, b"40{"), payload  # connected to namespace /


@pytest.mark.parametrize("server", SMALL_WINDOW_SERVERS)
def test_deflate_windows_are_small_where_the_server_chooses(start_cluster, server):
    """A browser's offer gets a 4 KB window each way; a client that does not let the server
    choose its window compresses with 32 KB and is inflated right; the server's answer, a
    message whose repeat lies 10,000 bytes back, inflates with a 4 KB window. A message
    under 1 KB (the open packet) is sent plain."""
    cluster = start_cluster(RUNTIME_TARGETS[server], workers=1, args=("--websocket-deflate",))
    sock, head = rawclient.upgrade(cluster.port, "127.0.0.2", extensions=BROWSER_OFFER,
                                   timeout=30)
    sock.close()
    granted = extensions_granted(head)
    assert {"server_max_window_bits=12", "client_max_window_bits=12"} <= granted, head

    sock, head = rawclient.upgrade(cluster.port, "127.0.0.3", extensions="permessage-deflate",
                                   timeout=30)
    with sock:
        assert "client_max_window_bits=12" not in extensions_granted(head), head
        outbound = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
        inbound = zlib.decompressobj(-12)  # fails on any back-reference past 4 KB
        opened, compressed = read_message(sock, inbound)
        assert opened.startswith("0{")
        assert not compressed, "a message under 1 KB is sent plain"
        send_compressed(sock, outbound, "40")
        assert read_message(sock, inbound)[0].startswith("40{")
        send_compressed(sock, outbound, "421" + json.dumps(["echo", BEYOND_SMALL_WINDOW * 2]))
        answer, compressed = read_message(sock, inbound)
        while answer == "2":
            sock.sendall(rawclient.frame(1, b"3"))
            answer, compressed = read_message(sock, inbound)
        assert answer == "431" + json.dumps([BEYOND_SMALL_WINDOW * 2]), answer[:80]
        assert compressed


def extensions_granted(head: bytes) -> set[str]:
    """The parameters of the permessage-deflate the upgrade's answer grants."""
    for line in head.decode().split("\r\n"):
        name, _, value = line.partition(":")
        if name.strip().lower() == "sec-websocket-extensions":
            return {part.strip() for part in value.split(";")}
    raise AssertionError(f"deflate not granted: {head!r}")


def send_compressed(sock, compressor, text: str) -> None:
    """One text message, compressed (RFC 7692: the flush's empty block's tail left off)."""
    data = compressor.compress(text.encode()) + compressor.flush(zlib.Z_SYNC_FLUSH)
    sock.sendall(rawclient.frame(1, data[:-4], compressed=True))


def read_message(sock, inflater) -> tuple[str, bool]:
    """One text message from the server, inflated with ``inflater`` if it is compressed,
    and whether it was."""
    opcode, compressed, payload = rawclient.read_frame_bits(sock)
    assert opcode == 1, (opcode, payload[:80])
    if compressed:
        payload = inflater.decompress(payload + b"\x00\x00\xff\xff")
    return payload.decode(), compressed
