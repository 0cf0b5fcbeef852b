"""The master's listening sockets: opened once, kept across every restart of workers."""
from __future__ import annotations

import errno
import os
import socket
import stat

from cluster.setup.config import Bind, ConfigError

BACKLOG = 2048


def open_listener(bind: Bind) -> socket.socket:
    """Bind and listen on ``bind``; raise ConfigError with one line on failure."""
    sock = socket.socket(bind.family, socket.SOCK_STREAM)
    try:
        if bind.family == socket.AF_UNIX:
            _remove_stale_unix_socket(str(bind.address))
        else:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if bind.family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(bind.address)
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        reason = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
        raise ConfigError(f"cannot listen on {bind}: {reason}") from None
    sock.setblocking(False)
    return sock


def close_listener(sock: socket.socket, bind: Bind) -> None:
    """Close a listener and remove its Unix socket file, if it has one."""
    sock.close()
    if bind.family == socket.AF_UNIX:
        try:
            os.unlink(str(bind.address))
        except FileNotFoundError:
            pass


def _remove_stale_unix_socket(path: str) -> None:
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ConfigError(f"cannot listen on unix:{path}: the file exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        os.unlink(path)
    else:
        raise ConfigError(f"cannot listen on unix:{path}: address already in use")
    finally:
        probe.close()
