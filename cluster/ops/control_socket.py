"""The control socket's server: synchronous ``status``, ``scale N``, ``reload``, ``stop``.

A Unix socket (mode 0600, so only the master's user may use it) served from the
master's selector loop, like the status server. A client sends one line of words; the
master answers with JSON lines ``{"ok": …, "message": …, "done": …}``. ``status`` and
bad requests are answered at once; ``scale`` when every slot of the new size serves;
``reload`` when the rolling restart finished or was aborted (with the reason); ``stop``
says it started, and the client then waits for the master to exit (see
:mod:`cluster.cli.control_client`). Waiting requests are checked on each turn of the loop
against :meth:`cluster.Master.facts`; nothing here changes the master but through its
public methods (``scale``, ``reload``, ``stop``). Signals keep working as before. The
connection handling (accept, bounded read, write, deadlines, close) is
:class:`cluster.ops.selector_server.SelectorServer`'s, shared with the status server.
"""
from __future__ import annotations

import json
import logging
import os
import socket
from typing import Callable, Protocol

from cluster.setup.config import Bind, ConfigError

from .selector_server import Connection, SelectorServer

log = logging.getLogger("sticky_cluster.master")

REQUEST_LIMIT = 256
"""Bytes a request line may have."""
REQUEST_TIMEOUT = 10.0
"""Seconds a client gets to send its request line."""
CONNECTION_LIMIT = 16
"""Control connections open at once; more are closed as soon as accepted."""
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


class ControlServer(SelectorServer):
    """Serves control requests on the Unix socket ``path`` for ``master``.

    :param path: the socket's path (``--control``, or ``PID_FILE.ctl``).
    :param master: the master it acts on.
    """

    read_after_request = True  # a client that leaves drops its waiting request

    def __init__(self, path: str, master: Controlled) -> None:
        super().__init__(Bind(socket.AF_UNIX, path), label="control socket",
                         request_limit=REQUEST_LIMIT, connection_limit=CONNECTION_LIMIT,
                         timeout=REQUEST_TIMEOUT)
        self.path = path
        self._master = master
        self._waiting: dict[Connection, Check] = {}

    def _listen(self) -> socket.socket:
        """Create the socket (mode 0600); ConfigError on failure."""
        if len(os.fsencode(self.path)) > UNIX_PATH_LIMIT:
            raise ConfigError(f"control socket path {self.path} is too long for a Unix socket "
                              f"({UNIX_PATH_LIMIT} bytes at most): use --control PATH")
        old = os.umask(0o177)
        try:
            return super()._listen()
        except ConfigError as exc:
            raise ConfigError(f"control socket: {exc}") from None
        finally:
            os.umask(old)

    def close(self) -> None:
        """Remove the socket; waiting clients are told the master stopped."""
        for conn in list(self._waiting):
            self._reply(conn, False, "the master stopped before it was done", done=True)
        super().close()

    @property
    def waiting(self) -> bool:
        """Whether a request waits for the master to get somewhere."""
        return bool(self._waiting)

    def tick(self, now: float) -> None:
        """Answer the waiting requests that are done; close connections past their deadline."""
        if self._waiting:
            facts = self._master.facts()
            for conn, check in list(self._waiting.items()):
                result = check(facts)
                if result is not None:
                    self._reply(conn, *result, done=True)
        super().tick(now)

    # ----------------------------------------------------------------- commands

    def _handle(self, conn: Connection, words: list[str]) -> None:
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

    def _scale(self, conn: Connection, facts: dict, size: int) -> None:
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

        self._waiting[conn] = scaled

    def _reload(self, conn: Connection, facts: dict) -> None:
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

        self._waiting[conn] = reloaded

    # --------------------------------------------------------------- plumbing

    def _received(self, conn: Connection) -> None:
        line, newline, _rest = bytes(conn.received).partition(b"\n")
        if not newline:
            if len(conn.received) >= REQUEST_LIMIT:
                conn.answered = True
                self._reply(conn, False, "request too long", done=True)
            return
        conn.answered = True
        conn.deadline = None
        words = line.decode(errors="replace").split()
        log.info("control socket: %s", " ".join(words)[:80] or "(empty request)")
        self._handle(conn, words)

    def _reply(self, conn: Connection, ok: bool, message: str, *, done: bool) -> None:
        if done:
            self._waiting.pop(conn, None)
        self._send(conn, json.dumps({"ok": ok, "message": message, "done": done}).encode()
                   + b"\n", close_after=done)

    def _close(self, conn: Connection) -> None:
        self._waiting.pop(conn, None)  # the client left: a waiting request is dropped, not undone
        super()._close(conn)


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
