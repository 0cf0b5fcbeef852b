"""Before the master binds or forks: check that the app loads and the adapter answers.

The master never imports the app (a rolling restart must load new code), so the app is
loaded once in a throw-away Python (``python -c``, as the user the workers run as) that
prints the worker runtime it needs; an app object given to the embedding API is looked
at in place. A broken app, one that does not load within ``--boot-timeout`` or an
unreachable broker is then one line for the user (:class:`ClusterError`), not a crash
loop of workers.
"""
from __future__ import annotations

import importlib
import logging
import os
import subprocess
import sys

from cluster.protocol.spec import AUTO, LOADER, RUNTIMES

from . import own
from .broker_check import check_broker
from .config import Settings
from .limits import raise_open_files_limit

log = logging.getLogger("sticky_cluster.master")


class ClusterError(RuntimeError):
    """The cluster cannot start or had to stop; the message is one line for the user."""


def preflight(settings: Settings) -> str:
    """Load the target and reach the adapter as the workers will; the runtime's name.

    Raises :class:`ClusterError` (one line) on the first problem; forks no worker, binds
    nothing. Raises the open files limit on the way (the master's and its workers').
    """
    shadowed = own.shadows([os.getcwd(), *sys.path])
    for where, line, name, path in own.imports_of_shadows(shadowed):
        raise ClusterError(f"{where}:{line} imports {name!r}, which is sticky-cluster's own "
                           f"package, not your {path}: rename your module")
    for name, path in shadowed:
        log.warning("%s is named like sticky-cluster's own package %r: the cluster runs its "
                    "own, and the app gets ours if it imports %r; rename it", path, name, name)
    if isinstance(settings.target, str):
        runtime = _check_in_a_child(settings)
    else:
        runtime = _runtime_of(settings.target, settings.runtime)
    if settings.adapter:
        error = check_broker(settings.adapter, settings.channel)
        if error:
            raise ClusterError(error)
    raise_open_files_limit()
    return runtime


def _check_in_a_child(settings: Settings) -> str:
    """Load the target named by a string in a new Python; the runtime it printed."""
    identity = settings.identity
    try:
        check = subprocess.run(
            [sys.executable, "-c", own.CHECK_BOOTSTRAP, own.ROOT, settings.runtime,
             settings.target],
            capture_output=True, text=True, timeout=settings.boot_timeout,
            **(identity.popen_args() if identity else {}))
    except subprocess.TimeoutExpired:
        raise ClusterError(f"the app {settings.target} did not load within "
                           f"{settings.boot_timeout:g} s (--boot-timeout): does its import "
                           "wait for something?") from None
    except OSError as exc:  # e.g. --user may not read this Python
        raise ClusterError(f"cannot load the app to check it: {exc.strerror}: "
                           f"{exc.filename}") from None
    if check.returncode != 0:
        lines = check.stderr.strip().splitlines() or ["the app could not be loaded"]
        raise ClusterError(lines[-1])
    return _named_runtime(check.stdout)


def _named_runtime(output: str) -> str:
    """The runtime ``python -m workers`` printed last (the app may print before it)."""
    lines = output.strip().splitlines()
    if not lines or lines[-1] not in RUNTIMES:
        raise ClusterError("the pre-flight check of the app did not name a worker runtime")
    return lines[-1]


def _runtime_of(app: object, worker_class: str) -> str:
    """The worker runtime that serves the app object ``app`` (already imported by its owner)."""
    loader = importlib.import_module(LOADER)
    try:
        return loader.load(app, None if worker_class == AUTO else worker_class).runtime
    except loader.TargetError as exc:
        raise ClusterError(str(exc)) from None
