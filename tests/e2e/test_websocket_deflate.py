"""permessage-deflate is granted only with ``--websocket-deflate``, in every runtime.

Every browser offers it; a worker that grants it keeps a compressor and an inflater per
client (an eventlet worker: ~100 KB more per browser client, ~190 KB once it sends 2 KB
messages; docs/limits.md) and compresses each message once per recipient. By default the
offer is declined, as Socket.IO's own Node server does, and the session goes on
uncompressed. With the option, every runtime grants it (tests/e2e/test_runtime_support.py).
"""
from __future__ import annotations

import pytest

from cluster.protocol.support import SERVERS
from tests.support import rawclient
from tests.support.masters import RUNTIME_TARGETS

BROWSER_OFFER = "permessage-deflate; client_max_window_bits"
"""What Chromium and Firefox offer."""


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
