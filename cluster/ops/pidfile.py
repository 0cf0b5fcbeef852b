"""The ``--pid`` file and its status file, both written by the master while it runs.

``FILE`` holds the master's pid; ``FILE.json`` (:class:`StatusFile`) says what the
master runs right now, for ``sticky-cluster status`` and ``scale``. Both are written
when the master starts and removed when it stops.

Both usually sit in a directory other users may write to (``/run``, ``/tmp``), and
the master often runs as root, so nothing here follows a symbolic link or writes to a
name someone could have planted: each version of a file is written to a fresh
temporary file (``tempfile.mkstemp``: ``O_EXCL``, no symlink followed) in the same
directory, then renamed over the target. The pid file is locked (``flock``) for the
master's whole life: the lock, not the pid written in it, says that a master runs. A
second master on the same file is refused; a file nobody holds is stale, whatever pid
it names, and the next master takes it over; ``stop``/``reload``/``scale``/``status``
act only on the process that holds the lock.
"""
from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import stat
import tempfile

log = logging.getLogger("sticky_cluster.master")

FILE_MODE = 0o644
"""Mode of the pid and status files (less what the umask takes away)."""

_TAKE_TRIES = 10


class PidFileError(RuntimeError):
    """The pid file is missing, unreadable, held by another master, or names no master."""


class PidFile:
    """A file holding the master's pid, locked while the master runs.

    :param path: where the file goes.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None

    def create(self) -> None:
        """Write and lock this process's pid; PidFileError if a running master holds the file.

        A file that no process holds is stale: it is replaced, with a log line.
        """
        for _ in range(_TAKE_TRIES):
            stale = self._lock_existing()
            if stale is _CHANGED:
                continue
            fd, tmp = _write_temp(self.path, f"{os.getpid()}\n")
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a new file: nobody else has it
                if stale is None:
                    os.link(tmp, self.path)  # fails if another master made the file meanwhile
                else:
                    os.replace(tmp, self.path)
            except FileExistsError:
                os.close(fd)
                continue
            finally:
                _unlink_quietly(tmp)
                if isinstance(stale, tuple):
                    os.close(stale[0])
            if isinstance(stale, tuple):
                log.warning("pid file %s was stale (it named %s, which holds no lock on it): "
                            "taken over", self.path, stale[1] or "no pid")
            self._fd = fd
            return
        raise PidFileError(f"pid file {self.path} keeps changing: is another master starting?")

    def _lock_existing(self) -> "tuple[int, str] | None | object":
        """Lock the file now at ``path``: (fd, its text), None if there is none, or _CHANGED."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise PidFileError(_open_error(self.path, exc)) from None
        try:
            before = os.fstat(fd)
            if not stat.S_ISREG(before.st_mode):
                raise PidFileError(f"pid file {self.path} is not a regular file")
            text = os.read(fd, 64).decode(errors="replace").strip()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise PidFileError(f"pid file {self.path} is held by a running master "
                                   f"({text or 'pid not written yet'})") from None
            if not _same_file(before, self.path):
                os.close(fd)
                return _CHANGED
        except BaseException:
            _close_quietly(fd)
            raise
        return fd, text

    def close_in_child(self) -> None:
        """In a forked worker: drop this process's copy of the lock's file descriptor.

        The lock stays with the master (an ``flock`` lives until its last descriptor is
        closed), and ends when the master does, even if a worker outlives it briefly.
        """
        if self._fd is not None:
            _close_quietly(self._fd)
            self._fd = None

    def remove(self) -> None:
        """Remove the file if it is still the one this process holds; release the lock."""
        if self._fd is None:
            return
        try:
            if _same_file(os.fstat(self._fd), self.path):
                os.unlink(self.path)
        except OSError:
            pass
        _close_quietly(self._fd)
        self._fd = None

    def read(self) -> int:
        """The pid of the master that holds the file; PidFileError when none does."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            raise PidFileError(f"no pid file at {self.path}: is the master running?") from None
        except OSError as exc:
            raise PidFileError(_open_error(self.path, exc)) from None
        try:
            text = os.read(fd, 64).decode(errors="replace").strip()
            held = _is_locked(fd)
        finally:
            os.close(fd)
        if not text.isdigit():
            raise PidFileError(f"pid file {self.path} does not hold a pid: {text[:40]!r}")
        pid = int(text)
        if not _exists(pid):
            raise PidFileError(f"stale pid file {self.path}: no process {pid} is running")
        if not held:
            raise PidFileError(f"stale pid file {self.path}: process {pid} is not the master "
                               "that wrote it (no master holds the file's lock)")
        return pid


_CHANGED = object()
"""The file at the path was replaced while it was being locked: look again."""


class StatusFile:
    """``PID_FILE.json``: the cluster's size and its workers, rewritten on each change.

    :param pid_path: the pid file it sits beside.
    """

    def __init__(self, pid_path: str) -> None:
        self.path = f"{pid_path}.json"

    def write(self, status: dict) -> None:
        """Replace the file's content with ``status`` (atomically)."""
        fd, tmp = _write_temp(self.path, json.dumps(status))
        os.close(fd)
        try:
            os.replace(tmp, self.path)
        except OSError:
            _unlink_quietly(tmp)
            raise

    def remove(self) -> None:
        """Remove the file (gone already is fine)."""
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def read(self) -> dict:
        """The last status written; PidFileError when there is none."""
        try:
            with open(os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)) as src:
                status = json.load(src)
        except FileNotFoundError:
            raise PidFileError(f"no status file at {self.path}: is the master running?") from None
        except (OSError, ValueError) as exc:
            raise PidFileError(f"cannot read status file {self.path}: {exc}") from None
        if not isinstance(status, dict):
            raise PidFileError(f"status file {self.path} holds no status")
        return status


def _write_temp(target: str, text: str) -> tuple[int, str]:
    """A new file beside ``target`` holding ``text``: (open fd, its path)."""
    directory, name = os.path.split(os.path.abspath(target))
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise PidFileError(f"cannot write beside {target}: {exc.strerror}") from None
    try:
        mask = os.umask(0)
        os.umask(mask)
        os.fchmod(fd, FILE_MODE & ~mask)
        os.write(fd, text.encode())
    except BaseException:
        os.close(fd)
        _unlink_quietly(tmp)
        raise
    return fd, tmp


def _same_file(info: os.stat_result, path: str) -> bool:
    try:
        now = os.lstat(path)
    except FileNotFoundError:
        return False
    return (now.st_dev, now.st_ino) == (info.st_dev, info.st_ino)


def _is_locked(fd: int) -> bool:
    """True when some process holds an ``flock`` on ``fd``'s file."""
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    fcntl.flock(fd, fcntl.LOCK_UN)
    return False


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def _open_error(path: str, exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return f"pid file {path} is a symbolic link: refusing to follow it"
    return f"cannot read pid file {path}: {exc.strerror}"


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass
