"""The ``--pid`` file and its status file, both written by the master while it runs.

``FILE`` holds the master's pid; ``FILE.json`` (:class:`StatusFile`) says what the
master runs right now, for ``sticky-cluster status`` and ``scale``. Both are written
when the master starts and removed when it stops.
"""
from __future__ import annotations

import json
import os


class PidFileError(RuntimeError):
    """The pid file is missing, unreadable or names no running process."""


class PidFile:
    """A file holding the master's pid.

    :param path: where the file goes.
    """

    def __init__(self, path: str) -> None:
        self.path = path

    def create(self) -> None:
        """Write this process's pid; refuse if a live master already holds the file."""
        try:
            other = self.read()
        except PidFileError:
            other = None
        if other is not None and other != os.getpid():
            raise PidFileError(f"pid file {self.path} names a running process ({other})")
        tmp = f"{self.path}.{os.getpid()}.tmp"
        with open(tmp, "w") as out:
            out.write(f"{os.getpid()}\n")
        os.replace(tmp, self.path)

    def remove(self) -> None:
        """Remove the file if it still holds this process's pid."""
        try:
            with open(self.path) as src:
                if src.read().strip() == str(os.getpid()):
                    os.unlink(self.path)
        except OSError:
            pass

    def read(self) -> int:
        """The pid of the running master; PidFileError when there is none."""
        try:
            with open(self.path) as src:
                text = src.read().strip()
        except FileNotFoundError:
            raise PidFileError(f"no pid file at {self.path}: is the master running?") from None
        except OSError as exc:
            raise PidFileError(f"cannot read pid file {self.path}: {exc.strerror}") from None
        if not text.isdigit():
            raise PidFileError(f"pid file {self.path} does not hold a pid: {text[:40]!r}")
        pid = int(text)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            raise PidFileError(f"stale pid file {self.path}: no process {pid} is running") from None
        except PermissionError:
            pass
        return pid


class StatusFile:
    """``PID_FILE.json``: the cluster's size and its workers, rewritten on each change.

    :param pid_path: the pid file it sits beside.
    """

    def __init__(self, pid_path: str) -> None:
        self.path = f"{pid_path}.json"

    def write(self, status: dict) -> None:
        """Replace the file's content with ``status`` (atomically)."""
        tmp = f"{self.path}.{os.getpid()}.tmp"
        with open(tmp, "w") as out:
            json.dump(status, out)
        os.replace(tmp, self.path)

    def remove(self) -> None:
        """Remove the file (gone already is fine)."""
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def read(self) -> dict:
        """The last status written; PidFileError when there is none."""
        try:
            with open(self.path) as src:
                status = json.load(src)
        except FileNotFoundError:
            raise PidFileError(f"no status file at {self.path}: is the master running?") from None
        except (OSError, ValueError) as exc:
            raise PidFileError(f"cannot read status file {self.path}: {exc}") from None
        if not isinstance(status, dict):
            raise PidFileError(f"status file {self.path} holds no status")
        return status
