"""The control socket's server: synchronous ``status``, ``scale N``, ``reload``, ``stop``.

A Unix socket (mode 0600, so only the master's user may use it) served from the
master's selector loop, like the status server. A client sends one line of words; the
master answers with JSON lines ``{"ok": …, "message": …, "done": …}``. ``status`` and
bad requests are answered at once; ``scale`` when every slot of the new size serves;
``reload`` when the rolling restart finished or was aborted (with the reason); ``stop``
says it started, and the client then waits for the master to exit (see
:mod:`cluster.control_client`). Waiting requests are checked on each turn of the loop
against :meth:`cluster.Master.facts`; nothing here changes the master but through its
public methods (``scale``, ``reload``, ``stop``). Signals keep working as before.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import selectors
import socket
import time
from typing import Callable, Protocol

from . import listeners
from .config import Bind, ConfigError

log = logging.getLogger("sticky_cluster.master")

REQUEST_LIMIT = 256
"""Bytes a request line may have."""
REQUEST_TIMEOUT = 10.0
"""Seconds a client gets to send its request line."""
CONNECTION_LIMIT = 16
UNIX_PATH_LIMIT = 107
"""Bytes of a Unix socket path (``sun_path`` less its terminating NUL)."""

Check = Callable[[dict], "tuple[bool, str] | None"]
"""Looks at the master's facts: None while a request waits, else (ok, message)."""


class Controlled(Protocol):
    """What the control server needs of the master."""

    def facts(self) -> dict: ...
    def scale(self, workers: int) -> None: ...
    def reload(self) -> None: ...
    def stop(self, graceful: bool = False) -> None: ...


@dataclasses.dataclass(eq=False)
class _Connection:
    sock: socket.socket
    deadline: float | None
    request: bytearray = dataclasses.field(default_factory=bytearray)
    out: bytes = b""
    waiting: Check | None = None
    close_after: bool = False


class ControlServer:
    """Serves control requests on the Unix socket ``path`` for ``master``.

    :param path: the socket's path (``--control``, or ``PID_FILE.ctl``).
    :param master: the master it acts on.
    """

    def __init__(self, path: str, master: Controlled) -> None:
        self.path = path
        self._master = master
        self._bind = Bind(socket.AF_UNIX, path)
        self._listener: socket.socket | None = None
        self._selector: selectors.BaseSelector | None = None
        self._connections: dict[socket.socket, _Connection] = {}

    def open(self, selector: selectors.BaseSelector) -> None:
        """Create the socket (mode 0600) and serve it from ``selector``; ConfigError on failure."""
        if len(os.fsencode(self.path)) > UNIX_PATH_LIMIT:
            raise ConfigError(f"control socket path {self.path} is too long for a Unix socket "
                              f"({UNIX_PATH_LIMIT} bytes at most): use --control PATH")
        old = os.umask(0o177)
        try:
            self._listener = listeners.open_listener(self._bind)
        except ConfigError as exc:
            raise ConfigError(f"control socket: {exc}") from None
        finally:
            os.umask(old)
        self._selector = selector
        selector.register(self._listener, selectors.EVENT_READ, self._on_accept)

    def close(self) -> None:
        """Remove the socket; waiting clients are told the master stopped."""
        for conn in list(self._connections.values()):
            if conn.waiting is not None:
                self._reply(conn, False, "the master stopped before it was done", done=True)
            self._close(conn)
        if self._listener is not None:
            self._unregister(self._listener)
            listeners.close_listener(self._listener, self._bind)
            self._listener = None

    def forget_in_child(self) -> None:
        """In a forked worker: close the sockets, leave the file and the selector alone."""
        for sock in self._connections:
            sock.close()
        self._connections.clear()
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    @property
    def waiting(self) -> bool:
        """Whether a request waits for the master to get somewhere."""
        return any(conn.waiting is not None for conn in self._connections.values())

    def tick(self, now: float) -> None:
        """Answer the waiting requests that are done; close connections past their deadline."""
        facts = self._master.facts() if self.waiting else None
        for conn in list(self._connections.values()):
            if conn.waiting is not None and facts is not None:
                result = conn.waiting(facts)
                if result is not None:
                    conn.waiting = None
                    self._reply(conn, *result, done=True)
            elif conn.deadline is not None and now >= conn.deadline:
                self._close(conn)

    # ----------------------------------------------------------------- commands

    def _handle(self, conn: _Connection, words: list[str]) -> None:
        command, args = (words[0], words[1:]) if words else ("", [])
        facts = self._master.facts()
        pid = facts["master"]
        if facts["stopping"] and command != "status":
            self._reply(conn, False, f"master {pid}: a {facts['stopping']} stop is in progress",
                        done=True)
        elif command == "status" and not args:
            self._reply(conn, True, describe(facts), done=True)
        elif command == "scale" and len(args) == 1 and args[0].isdigit() and int(args[0]) >= 1:
            self._scale(conn, facts, int(args[0]))
        elif command == "reload" and not args:
            self._reload(conn, facts)
        elif command == "stop" and args in ([], ["graceful"]):
            graceful = bool(args)
            self._master.stop(graceful)
            self._reply(conn, True, f"master {pid}: {'graceful' if graceful else 'fast'} stop "
                                    "started", done=True)
        else:
            self._reply(conn, False, "unknown request; use: status | scale N | reload | "
                                     "stop [graceful]", done=True)

    def _scale(self, conn: _Connection, facts: dict, size: int) -> None:
        start, pid = facts["size"], facts["master"]
        self._master.scale(size)

        def scaled(now: dict) -> tuple[bool, str] | None:
            if now["stopping"]:
                return False, f"master {pid}: stopped while scaling"
            if now["size"] == start != size:
                return None  # the scale command has not run yet
            if now["size"] != size:
                return False, f"master {pid}: scaled to {now['size']} workers by someone else"
            serving = sorted(w["slot"] for w in now["workers"] if w["state"] == "serving")
            if serving != list(range(size)):
                return None
            if start == size:
                return True, f"master {pid}: already {size} workers"
            return True, f"master {pid}: scaled from {start} to {size} workers (all serving)"

        conn.waiting = scaled

    def _reload(self, conn: _Connection, facts: dict) -> None:
        pid = facts["master"]
        generation = facts["rolls"]["started"] + 1
        self._master.reload()

        def reloaded(now: dict) -> tuple[bool, str] | None:
            rolls = now["rolls"]
            if now["stopping"]:
                return False, f"master {pid}: stopped during the rolling restart"
            if rolls["finished"] < generation:
                return None
            failure = rolls["failure"]
            if failure and failure[0] >= generation:
                return False, f"master {pid}: rolling restart aborted: {failure[1]}"
            return True, f"master {pid}: rolling restart done ({now['size']} workers replaced)"

        conn.waiting = reloaded

    # --------------------------------------------------------------- plumbing

    def _on_accept(self, listener: socket.socket, _mask: int) -> None:
        try:
            sock, _address = listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            log.warning("control socket: accept failed: %s", exc.strerror)
            return
        if len(self._connections) >= CONNECTION_LIMIT:
            sock.close()
            return
        sock.setblocking(False)
        conn = _Connection(sock, time.monotonic() + REQUEST_TIMEOUT)
        self._connections[sock] = conn
        assert self._selector is not None
        self._selector.register(sock, selectors.EVENT_READ, self._on_event)

    def _on_event(self, sock: socket.socket, mask: int) -> None:
        conn = self._connections.get(sock)
        if conn is None:
            return
        if mask & selectors.EVENT_WRITE:
            self._flush(conn)
        if not mask & selectors.EVENT_READ or sock not in self._connections:
            return
        try:
            data = sock.recv(REQUEST_LIMIT)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._close(conn)  # the client left (a waiting request is dropped, not undone)
            return
        if conn.deadline is None:
            return  # one request per connection: later bytes are ignored
        conn.request += data
        line, newline, _rest = bytes(conn.request).partition(b"\n")
        if not newline:
            if len(conn.request) >= REQUEST_LIMIT:
                self._reply(conn, False, "request too long", done=True)
            return
        conn.deadline = None
        words = line.decode(errors="replace").split()
        log.info("control socket: %s", " ".join(words)[:80] or "(empty request)")
        self._handle(conn, words)

    def _reply(self, conn: _Connection, ok: bool, message: str, *, done: bool) -> None:
        conn.out += json.dumps({"ok": ok, "message": message, "done": done}).encode() + b"\n"
        conn.close_after = done
        self._flush(conn)

    def _flush(self, conn: _Connection) -> None:
        assert self._selector is not None
        try:
            sent = conn.sock.send(conn.out)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._close(conn)
            return
        conn.out = conn.out[sent:]
        if not conn.out and conn.close_after:
            self._close(conn)
            return
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if conn.out else 0)
        self._selector.modify(conn.sock, events, self._on_event)

    def _close(self, conn: _Connection) -> None:
        self._connections.pop(conn.sock, None)
        self._unregister(conn.sock)
        conn.sock.close()

    def _unregister(self, sock: socket.socket) -> None:
        if self._selector is None:
            return
        try:
            self._selector.unregister(sock)
        except (KeyError, ValueError):
            pass


def describe(facts: dict) -> str:
    """The workers table ``sticky-cluster status`` prints (pure)."""
    head = (f"master {facts['master']}: {facts['size']} workers, "
            f"{sum(w['sessions'] for w in facts['workers'])} sessions, up {facts['uptime']:.0f} s"
            + (f", {facts['stopping']} stop in progress" if facts["stopping"] else "")
            + (", rolling restart in progress" if facts["rolling"] else ""))
    lines = [head, f"  {'slot':>4}  {'pid':>7}  {'state':<9} {'sessions':>8}  {'uptime':>8}  "
                   f"{'restarts':>8}  {'heartbeat':>9}"]
    for w in sorted(facts["workers"], key=lambda w: (w["slot"], w["uptime"])):
        lines.append(f"  {w['slot']:>4}  {w['pid']:>7}  {w['state']:<9} {w['sessions']:>8}  "
                     f"{w['uptime']:>7.0f}s  {w['restarts']:>8}  {w['heartbeat_age']:>8.1f}s")
    return "\n".join(lines)
