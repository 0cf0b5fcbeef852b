"""Before the master binds or forks: check that the app loads, the adapter answers, and
the log and pid files can be written.

The master never imports the app (a rolling restart must load new code), so the app is
loaded once in a throw-away Python (``python -c``, as the user the workers run as) that
prints the worker runtime it needs; an app object given to the embedding API is looked
at in place. A broken app, one that does not load within ``--boot-timeout``, an
option the app's runtime does not hold (:mod:`cluster.protocol.support`), an
unreachable broker or a file in a missing directory is then one line for the user
(:class:`ClusterError`), not a crash loop of workers nor an option accepted and
ignored; with ``--log-level debug`` the app's whole traceback is logged too.
"""
from __future__ import annotations

import importlib
import logging
import os
import subprocess
import sys

from cluster.protocol import adapters, support
from cluster.protocol.spec import AUTO, CHECK_WARNING, LOADER, RUNTIMES

from . import own
from .broker_check import check_broker
from .config import Settings
from .limits import raise_open_files_limit
from .logs import TRACEBACK
from .options import OPTIONS, default

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
        runtime = load_in_a_child(settings)
    else:
        runtime = _runtime_of(settings.target, settings.runtime)
    refused = refused_option(settings, runtime)
    if refused:
        raise ClusterError(refused)
    if settings.adapter:
        error = check_broker(settings.adapter, settings.channel)
        if error:
            raise ClusterError(error)
    raise_open_files_limit()
    return runtime


def check_files(settings: Settings) -> None:
    """Raise :class:`ClusterError` (one line) when the log file or the pid file cannot be written."""
    for label, path in (("log file", settings.log_file), ("pid file", settings.pid_file)):
        if path and path != "-":
            why = _unwritable(path, beside=label == "pid file")
            if why:
                raise ClusterError(f"cannot write the {label} {path}: {why}")


def _unwritable(path: str, beside: bool) -> str | None:
    """Why ``path`` cannot be written (or created; ``beside``: a file made beside it and
    renamed over it), or None."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        return f"no directory {directory}"
    if os.path.isdir(path):
        return "it is a directory"
    if os.path.exists(path) and not beside:
        return None if os.access(path, os.W_OK) else "permission denied"
    return None if os.access(directory, os.W_OK | os.X_OK) else f"permission denied in {directory}"


def refused_option(settings: Settings, runtime: str) -> str | None:
    """The line that refuses an option ``runtime``'s workers do not hold, or None.

    An option at its default is never refused; one set away from it is, where
    :data:`cluster.protocol.support.SUPPORT` says the runtime refuses it, and so is an
    adapter URL of a broker family the runtime has no manager for.
    """
    for option in OPTIONS:
        if not option.worker:
            continue
        value = getattr(settings, option.settings_field)
        why = support.refusal(runtime, option.name)
        if why and value != default(option.name):
            return f"{option.long_flag} is not for {runtime} workers: {why.replace('`', '')}"
    if settings.adapter:
        why = support.adapter_refusal(runtime, adapters.scheme_of(settings.adapter).family)
        if why:
            return f"--adapter {adapters.redact(settings.adapter)}: {why}"
    return None


def load_in_a_child(settings: Settings) -> str:
    """Load the target named by a string in a new Python (as the workers' user); the
    runtime it printed. Raises :class:`ClusterError` with the error's last line."""
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
        if len(lines) > 1:
            log.debug("loading the app failed", extra={TRACEBACK: "\n".join(lines[:-1])})
        raise ClusterError(lines[-1])
    return _named_runtime(check.stdout)


def _named_runtime(output: str) -> str:
    """The runtime ``python -m workers`` printed last (the app may print before it); its
    warnings are logged."""
    lines = output.strip().splitlines()
    if not lines or lines[-1] not in RUNTIMES:
        raise ClusterError("the pre-flight check of the app did not name a worker runtime")
    for line in lines[:-1]:
        if line.startswith(CHECK_WARNING):
            log.warning("%s", line[len(CHECK_WARNING):])
    return lines[-1]


def _runtime_of(app: object, worker_class: str) -> str:
    """The worker runtime that serves the app object ``app`` (already imported by its owner)."""
    loader = importlib.import_module(LOADER)
    try:
        return loader.load(app, None if worker_class == AUTO else worker_class).runtime
    except loader.TargetError as exc:
        raise ClusterError(str(exc)) from None
