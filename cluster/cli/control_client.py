"""The control socket's client: what ``sticky-cluster status|scale|reload|stop`` say to the master.

:func:`request` sends one request line and returns the master's final answer. For
``stop`` it then waits until the master process has exited, so the command returns
when the port is free. When there is no control socket, the commands fall back to
signals (:mod:`cluster.cli.control`).
"""
from __future__ import annotations

import json
import os
import socket
import stat
import time

from cluster.ops.pidfile import PidFileError

CONNECT_TIMEOUT = 5.0
STOP_TIMEOUT = 120.0
"""Seconds ``stop`` waits for the master to exit after it said it stops."""


class ControlError(PidFileError):
    """The master refused a request or could not be reached; the message is one line."""


class ControlUnreachable(ControlError):
    """Nobody listens on the control socket (a master killed with SIGKILL leaves its file)."""


def available(path: str | None) -> bool:
    """Whether ``path`` is a control socket (a Unix socket file)."""
    if not path:
        return False
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False


def request(path: str, words: list[str], timeout: float | None = None) -> str:
    """Send ``words`` to the master at ``path``; return its answer, or raise ControlError."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(CONNECT_TIMEOUT)
        try:
            sock.connect(path)
        except PermissionError:  # mode 0600: another user's master
            raise ControlUnreachable(f"not allowed to use the control socket {path}: run this "
                                     "as the master's user") from None
        except OSError as exc:
            raise ControlUnreachable(f"cannot reach the master at {path}: {exc.strerror}") from None
        sock.settimeout(timeout)
        sock.sendall(" ".join(words).encode() + b"\n")
        answer = _final_answer(sock, path)
    finally:
        sock.close()
    if not answer.get("ok"):
        raise ControlError(str(answer.get("message", "the master refused the request")))
    message = str(answer.get("message", ""))
    if words[:1] == ["stop"]:
        pid = int(message.split()[1].rstrip(":"))
        _wait_exit(pid)
        message += f"; master {pid} exited"
    return message


def _final_answer(sock: socket.socket, path: str) -> dict:
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            raise ControlError(f"no answer from the master at {path} in time") from None
        if not chunk:
            raise ControlError(f"the master at {path} closed the connection without an answer")
        data += chunk
        while b"\n" in data:
            line, data = data.split(b"\n", 1)
            try:
                answer = json.loads(line)
            except ValueError:
                raise ControlError(f"{path} is not a sticky-cluster control socket") from None
            if answer.get("done"):
                return answer


def _wait_exit(pid: int) -> None:
    deadline = time.monotonic() + STOP_TIMEOUT
    while _running(pid):
        if time.monotonic() > deadline:
            raise ControlError(f"master {pid} still runs {STOP_TIMEOUT:.0f} s after it said it stops")
        time.sleep(0.05)


def _running(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for its parent has exited)."""
    try:
        with open(f"/proc/{pid}/stat") as src:
            return src.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False
