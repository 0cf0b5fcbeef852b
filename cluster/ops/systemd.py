"""systemd integration: ``Type=notify`` readiness and socket activation, no libsystemd needed.

Notify (``sd_notify(3)``): when ``NOTIFY_SOCKET`` is set, :class:`Notifier` sends
datagrams to it: ``READY=1`` once the first generation of workers serves,
``RELOADING=1`` … ``READY=1`` around a rolling restart, ``STOPPING=1`` on a stop,
``STATUS=…`` lines, and ``WATCHDOG=1`` every half ``WATCHDOG_USEC``. Sends never block
and never fail the master: a datagram that cannot go is dropped.

Socket activation (``sd_listen_fds(3)``): with ``LISTEN_FDS`` set for this process
(``LISTEN_PID``), :func:`inherited_listeners` returns the listening sockets systemd
passed from fd 3 on; the master serves them instead of binding, so restarting the
service never closes the port.

Both read their variables once and remove them from the environment, as systemd's
own helpers do, so the workers and the app never see them.
"""
from __future__ import annotations

import os
import socket
import time

from cluster.setup.config import Bind, ConfigError

LISTEN_FDS_START = 3


class Notifier:
    """Talks to systemd's notify socket, when there is one (else every call does nothing)."""

    def __init__(self) -> None:
        address = os.environ.pop("NOTIFY_SOCKET", "")
        self._sock: socket.socket | None = None
        self._address = "\0" + address[1:] if address.startswith("@") else address
        if address:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.setblocking(False)
        self.watchdog_interval = _watchdog_interval()
        """Seconds between two ``WATCHDOG=1``, or None without ``WATCHDOG_USEC``."""
        self._next_watchdog = 0.0
        self._last_status = ""

    @property
    def enabled(self) -> bool:
        """Whether systemd listens (``NOTIFY_SOCKET`` was set)."""
        return self._sock is not None

    def send(self, *fields: str) -> None:
        """Send ``FIELD=value`` lines as one datagram (dropped if it cannot be sent now)."""
        if self._sock is None:
            return
        try:
            self._sock.sendto("\n".join(fields).encode(errors="replace"), self._address)
        except OSError:
            pass

    def ready(self, status: str) -> None:
        """The service serves (at start, or after a reload)."""
        self.send("READY=1", f"STATUS={status}")
        self._last_status = status

    def reloading(self) -> None:
        """A reload started; ``READY=1`` follows when it is over."""
        self.send("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")

    def stopping(self) -> None:
        """The service stops."""
        self.send("STOPPING=1")

    def status(self, text: str) -> None:
        """Show ``text`` in ``systemctl status`` (sent only when it changed)."""
        if text != self._last_status:
            self._last_status = text
            self.send(f"STATUS={text}")

    def tick(self, now: float) -> None:
        """Send ``WATCHDOG=1`` when it is due."""
        if self.watchdog_interval is not None and now >= self._next_watchdog:
            self._next_watchdog = now + self.watchdog_interval
            self.send("WATCHDOG=1")

    def close(self) -> None:
        """Close the socket (a forked worker must not notify)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _watchdog_interval() -> float | None:
    usec = os.environ.pop("WATCHDOG_USEC", "")
    pid = os.environ.pop("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2_000_000


def inherited_listeners() -> list[tuple[socket.socket, Bind]]:
    """The listening sockets systemd passed to this process (none without ``LISTEN_FDS``).

    Raises ConfigError (one line) when a passed fd is not a listening stream socket.
    """
    count = os.environ.pop("LISTEN_FDS", "")
    pid = os.environ.pop("LISTEN_PID", "")
    os.environ.pop("LISTEN_FDNAMES", None)
    if not count.isdigit() or pid != str(os.getpid()):
        return []
    found = []
    for fd in range(LISTEN_FDS_START, LISTEN_FDS_START + int(count)):
        try:
            sock = socket.socket(fileno=fd)
        except OSError as exc:
            raise ConfigError(f"LISTEN_FDS: fd {fd} is not a socket ({exc.strerror})") from None
        if sock.type != socket.SOCK_STREAM or not sock.getsockopt(socket.SOL_SOCKET,
                                                                   socket.SO_ACCEPTCONN):
            sock.detach()
            raise ConfigError(f"LISTEN_FDS: fd {fd} is not a listening stream socket")
        sock.set_inheritable(False)
        sock.setblocking(False)
        found.append((sock, Bind(sock.family, _address(sock))))
    return found


def _address(sock: socket.socket) -> tuple[str, int] | str:
    name = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        return name.decode(errors="replace") if isinstance(name, bytes) else name
    return name[0], name[1]
