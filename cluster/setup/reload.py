"""``--reload`` (development): roll the workers when the app's Python files change.

The master never imports the app and runs one thread, so the watching is done by a
helper process (this module's :func:`main`, started by :class:`Reloader`): it watches
the app's files with watchfiles, and on a change loads the app in a throw-away Python
exactly as the master's start-up check does (:func:`cluster.setup.preflight.load_in_a_child`).
It then writes one JSON line to a pipe the master's loop reads: the new code loads (the
master rolls its workers, one slot at a time, as on ``HUP``) or does not (the master
logs the error in one line and the old workers keep serving).

What is watched: the directory of the target's top-level module or package (found
without importing it), and every ``--reload-dir``; in them, changes to ``*.py`` files
(and to any file named by ``--reload-dir`` itself). The helper exits when the master
closes it or dies.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import selectors
import subprocess
import sys
from typing import Callable

from . import own
from .config import Settings
from .logs import escape
from .preflight import ClusterError

log = logging.getLogger("sticky_cluster.master")

BOOTSTRAP = ("import sys; root = sys.argv.pop(1); sys.path.insert(0, root); "
             "import cluster.setup.reload as reload; sys.path.remove(root); "
             "sys.exit(reload.main(sys.argv[1:]))")
"""``python -c`` code that runs :func:`main` from our own packages (see
:mod:`cluster.setup.own`)."""
PARENT_CHECK_MS = 1000
"""Milliseconds between two looks, in the helper, at whether the master still lives."""


class Reloader:
    """The master's side of ``--reload``: starts the watcher, reads what it says.

    :param settings: ``target``, ``runtime``, ``user``, ``group`` and ``reload_dirs``.
    :param selector: the master's loop, woken by the watcher's messages.
    :param on_change: called from the loop with the runtime the new code needs, once it
                      has been loaded successfully after a change.
    Raises :class:`~cluster.setup.preflight.ClusterError` when watchfiles is missing or the
    target is not named by a string (an object cannot be reloaded).
    """

    def __init__(self, settings: Settings, selector: selectors.BaseSelector,
                 on_change: Callable[[str], None]) -> None:
        if not isinstance(settings.target, str):
            raise ClusterError("--reload needs the app named as MODULE:ATTRIBUTE, not an object")
        if importlib.util.find_spec("watchfiles") is None:
            raise ClusterError('--reload needs watchfiles: pip install "/path/to/sticky-cluster[reload]"')
        self._on_change = on_change
        self._selector = selector
        read_end, write_end = os.pipe2(os.O_CLOEXEC)
        command = [sys.executable, "-c", BOOTSTRAP, own.ROOT, "--target", settings.target,
                   "--runtime", settings.runtime, "--master", str(os.getpid())]
        for flag, value in (("--user", settings.user), ("--group", settings.group)):
            if value is not None:
                command += [flag, str(value)]
        command += [os.path.abspath(path) for path in settings.reload_dirs]
        try:
            self._process: subprocess.Popen | None = subprocess.Popen(
                command, stdout=write_end, stdin=subprocess.DEVNULL)
        finally:
            os.close(write_end)
        self._pipe = os.fdopen(read_end, "rb", buffering=0)
        os.set_blocking(read_end, False)
        self._buffer = b""
        selector.register(self._pipe, selectors.EVENT_READ, self._readable)

    def close(self) -> None:
        """Stop the watcher and wait for it (the master stops)."""
        self._unregister()
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(5)
            self._process = None

    def forget_in_child(self) -> None:
        """In a new worker: close the pipe (the watcher is the master's)."""
        self._pipe.close()
        self._process = None

    def _unregister(self) -> None:
        if not self._pipe.closed:
            try:
                self._selector.unregister(self._pipe)
            except (KeyError, ValueError):
                pass
            self._pipe.close()

    def _readable(self, _pipe: object, _mask: int) -> None:
        try:
            data = self._pipe.read(65536)
        except BlockingIOError:
            return
        if data is None:  # nothing yet
            return
        if not data:
            log.error("--reload: the file watcher stopped; changes are not watched any more")
            self._unregister()
            return
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            self._message(json.loads(line))

    def _message(self, message: dict) -> None:
        if "watching" in message:
            log.info("--reload: watching %s for changes", ", ".join(message["watching"]))
            return
        changed = ", ".join(message["changed"][:5]) + (" …" if len(message["changed"]) > 5 else "")
        if "error" in message:
            log.error("--reload: %s changed but the app does not load: %s; the workers keep "
                      "the code they run", changed, escape(message["error"]))
        else:
            log.info("--reload: %s changed: rolling the workers", changed)
            self._on_change(message["runtime"])


# --------------------------------------------------------------------- the watcher

def watch_paths(target: str, extra: list[str]) -> list[str]:
    """The directory of ``target``'s top-level module or package (the working directory
    when it cannot be found without importing), then ``extra``."""
    top = target.partition(":")[0].partition(".")[0]
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        home = list(spec.submodule_search_locations)[0]
    elif spec is not None and spec.origin and os.path.isfile(spec.origin):
        home = os.path.dirname(spec.origin)
    else:
        home = os.getcwd()
    return [home, *(path for path in extra if path != home)]


def main(argv: list[str]) -> int:
    """The watcher: JSON lines on stdout for the master (see :class:`Reloader`)."""
    import watchfiles  # only here: the master itself never needs it

    from .config import make_settings
    from .preflight import load_in_a_child

    parser = argparse.ArgumentParser(prog="sticky-cluster --reload watcher")
    parser.add_argument("--target", required=True)
    parser.add_argument("--runtime", required=True)
    parser.add_argument("--master", type=int, required=True)
    parser.add_argument("--user")
    parser.add_argument("--group")
    parser.add_argument("paths", nargs="*")
    args = parser.parse_args(argv)
    sys.path.insert(0, os.getcwd())
    settings = make_settings(args.target, worker_class=args.runtime, user=args.user,
                             group=args.group)
    paths = watch_paths(args.target, args.paths)
    files = {path for path in paths if os.path.isfile(path)}
    python_files = watchfiles.PythonFilter()

    def wanted(change: watchfiles.Change, path: str) -> bool:
        return path in files or python_files(change, path)

    say({"watching": paths})
    for changes in watchfiles.watch(*paths, watch_filter=wanted, yield_on_timeout=True,
                                    rust_timeout=PARENT_CHECK_MS, raise_interrupt=False):
        if os.getppid() != args.master:
            return 0
        if not changes:
            continue
        here = os.getcwd() + os.sep
        changed = sorted({path[len(here):] if path.startswith(here) else path
                          for _change, path in changes})
        try:
            say({"changed": changed, "runtime": load_in_a_child(settings)})
        except ClusterError as exc:
            say({"changed": changed, "error": str(exc)})
    return 0


def say(message: dict) -> None:
    """One JSON line to the master."""
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()
