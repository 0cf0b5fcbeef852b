"""A worker's link to the master, in the test's own process: a client handed off over the
channel, a green hub of plain calls, and a runtime that cannot take a client."""
from __future__ import annotations

import socket
import threading

from cluster.protocol import frames
from workers.green_link import GreenHub


def handoff(master_end: socket.socket, address: tuple[str, int]) -> socket.socket:
    """Hand one end of a fresh TCP connection over ``master_end``; return the other end."""
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    served, _ = listener.accept()
    listener.close()
    frames.send_packet(master_end, frames.handoff_packet(address), served.fileno())
    served.close()
    return client


def plain_hub(spawned: list | None = None, **waits) -> GreenHub:
    """A green hub of plain calls in place of eventlet's or gevent's: ``spawn`` keeps the
    function in ``spawned``; ``read``/``write`` are the waits (default: return at once)."""
    return GreenHub(spawn=(spawned if spawned is not None else []).append,
                    wait_readable=waits.get("read", lambda fd: None),
                    wait_writable=waits.get("write", lambda fd: None), lock=threading.Lock)


def refuse_client(*_client) -> None:
    """A link's ``on_client`` that fails as a runtime that cannot take the client does."""
    raise RuntimeError("the runtime could not take the client")
