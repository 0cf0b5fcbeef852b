"""Free TCP ports, each pytest process from its own block.

The suite runs in parallel (pytest-xdist, ``make test``): every pytest process hands out
ports from its own block below the kernel's ephemeral range, so neither another process
nor a client's outgoing connection takes a port a test was given.
"""
from __future__ import annotations

import itertools
import os
import socket

PORT_BLOCK = 2000
"""Ports each pytest process hands out, in turn, from its own block."""
FIRST_PORT = 12000
"""The first block's first port: the blocks end below the ephemeral range (32768)."""


def _port_block() -> itertools.cycle:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")  # gw0, gw1 … under xdist
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    first = FIRST_PORT + (index % 10) * PORT_BLOCK
    return itertools.cycle(range(first, first + PORT_BLOCK))


_PORTS = _port_block()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now, from this pytest process's own block."""
    for port in itertools.islice(_PORTS, PORT_BLOCK):
        with socket.socket() as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue  # in use (a cluster of an earlier test still draining, TIME_WAIT)
            return port
    raise RuntimeError(f"no free port in this process's block of {PORT_BLOCK}")
