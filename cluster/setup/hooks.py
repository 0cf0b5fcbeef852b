"""Server hooks: the user's functions the master calls at fixed points, as gunicorn's.

A config file (:mod:`cluster.setup.config_file`) or ``Master(hooks={...})`` names them:

============================  ===========================================================
``on_starting(master)``       in the master, before the app is checked and the ports bound
``when_ready(master)``        in the master, once every worker of the first start serves
``pre_fork(master, worker)``  in the master, just before a worker is forked (``pid`` None)
``post_fork(master, worker)`` in the new worker, after fork, before it loads the app
``worker_exit(master, worker)`` in the master, once a worker has exited and been reaped
``on_reload(master)``         in the master, on a rolling restart (HUP, ``reload``, --reload)
``on_exit(master)``           in the master, as it exits
============================  ===========================================================

A hook runs in the master's one thread: while it runs nothing else does (no accept, no
hand-off). So each call is bounded: after ``hook_timeout`` seconds a ``SIGALRM`` interrupts
it (a hook blocked inside C code that retries on ``EINTR`` is interrupted at its next
Python line). A hook that raises or runs over is logged in one line with its name and
where it was, and the master goes on as if it had returned.
"""
from __future__ import annotations

import dataclasses
import difflib
import logging
import os
import signal
import traceback
from typing import Callable, Mapping

log = logging.getLogger("sticky_cluster.master")

HOOK_NAMES: tuple[str, ...] = ("on_starting", "when_ready", "pre_fork", "post_fork",
                               "worker_exit", "on_reload", "on_exit")
"""Every hook, in the order they first fire."""


@dataclasses.dataclass(frozen=True)
class WorkerInfo:
    """The worker a hook is about.

    :param slot: its slot (0 … workers - 1); a replacement takes the same slot.
    :param tag: its tag, unique among the live workers (it is in its sessions' ids).
    :param pid: its process id; None in ``pre_fork`` (not forked yet).
    :param exit: how it ended, in ``worker_exit`` (``exit code 0``, ``signal SIGKILL``).
    """

    slot: int
    tag: int
    pid: int | None = None
    exit: str | None = None


class HookTimeout(BaseException):
    """A hook ran past ``hook_timeout`` (a BaseException: an ``except Exception`` in the
    hook does not swallow it)."""


def closest(name: str, names: tuple[str, ...] | list[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``names`` to ``name``, or ``""``."""
    match = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


class Hooks:
    """The hooks given, by name; calling one that was not given does nothing.

    :param functions: hook name -> callable. Raises ValueError (one line) for a name that
                      is not a hook, or a value that is not callable.
    :param timeout: seconds each call may take (``hook_timeout``).
    """

    def __init__(self, functions: Mapping[str, Callable] | None = None,
                 timeout: float = 10.0) -> None:
        functions = dict(functions or {})
        for name, function in functions.items():
            if name not in HOOK_NAMES:
                raise ValueError(f"unknown hook {name!r}{closest(name, HOOK_NAMES)}")
            if not callable(function):
                raise ValueError(f"hook {name} is not a function")
        self._functions = functions
        self.timeout = timeout

    def __bool__(self) -> bool:
        return bool(self._functions)

    def __contains__(self, name: str) -> bool:
        return name in self._functions

    @property
    def names(self) -> list[str]:
        """The hooks given, in :data:`HOOK_NAMES` order."""
        return [name for name in HOOK_NAMES if name in self._functions]

    def call(self, name: str, *args: object) -> None:
        """Run hook ``name`` with ``args``, bounded; log (never raise) what goes wrong.

        Runs in the calling process's main thread (the master's, or a new worker's).
        """
        function = self._functions.get(name)
        if function is None:
            return
        previous = signal.signal(signal.SIGALRM, _interrupt)
        signal.setitimer(signal.ITIMER_REAL, self.timeout)
        try:
            function(*args)
        except HookTimeout as exc:
            log.error("hook %s did not return within %g s (hook_timeout): interrupted%s",
                      name, self.timeout, _where(exc))
        except Exception as exc:  # noqa: BLE001 - a user's hook must never end the master
            log.error("hook %s raised %s: %s%s", name, type(exc).__name__, exc, _where(exc))
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)


def _interrupt(_signum: int, _frame: object) -> None:
    raise HookTimeout


def _where(exc: BaseException) -> str:
    """`` (at FILE:LINE)``: the innermost frame of ``exc``'s traceback that is not ours."""
    frames = [frame for frame in traceback.extract_tb(exc.__traceback__)
              if frame.filename != __file__]
    if not frames:
        return ""
    path = frames[-1].filename
    shown = os.path.relpath(path) if path.startswith(os.getcwd() + os.sep) else path
    return f" (at {shown}:{frames[-1].lineno})"
