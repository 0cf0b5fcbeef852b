"""Background tasks of the threading worker on reused threads.

python-socketio and python-engineio start a thread for each background task: one per
event the app handles (``async_handlers``, their default), one writer per websocket, and
whatever the app starts with ``start_background_task`` (Engine.IO's pings, one more per
session, are the poller's timers here: :mod:`workers.threading.timers`).
``Thread.start`` makes a new OS thread and then waits until it runs, which, among the
hundreds of threads of a busy worker that want the GIL, holds up the thread that reads the
client's messages (measured: a sixth of a threading worker's CPU went to starting
threads, one per echoed message). :class:`PooledThread` runs each task on an idle thread
of the pool, started only when none is idle and ended after :data:`IDLE_TIMEOUT` idle
seconds: every task still runs at once in a thread of its own, as before, but handing it
over costs one wake-up.

Each task runs in a fresh :mod:`contextvars` context, as a new thread would. What an app
keeps in a ``threading.local`` stays with the thread for its next task, as with the
request threads of any thread-pool WSGI server (``gunicorn -k gthread`` among them).
"""
from __future__ import annotations

import contextvars
import itertools
import sys
import threading
from typing import Any, Callable

IDLE_TIMEOUT = 60.0
"""Seconds a pool thread waits for its next task before it ends."""

_names = itertools.count(1)


class _Runner:
    """One pool thread: runs the task it is handed, then waits for the next one."""

    __slots__ = ("task", "ready")

    def __init__(self, task: PooledThread) -> None:
        self.task: PooledThread | None = task
        self.ready = threading.Lock()
        self.ready.acquire()  # released when a task is handed over

    def loop(self) -> None:
        while True:
            task, self.task = self.task, None
            assert task is not None
            task.run_here()
            del task
            if not _pool.wait_for_task(self):
                return


class _Pool:
    """The idle runners, the most recently idle first (its stack is warm)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: list[_Runner] = []

    def start(self, task: PooledThread) -> None:
        with self._lock:
            runner = self._idle.pop() if self._idle else None
        if runner is not None:
            runner.task = task
            runner.ready.release()
            return
        thread = threading.Thread(target=_Runner(task).loop, daemon=True,
                                  name=f"sticky-task-{next(_names)}")
        thread.start()

    def wait_for_task(self, runner: _Runner) -> bool:
        """Wait idle for a task; False when none came within :data:`IDLE_TIMEOUT`."""
        with self._lock:
            self._idle.append(runner)
        if runner.ready.acquire(timeout=IDLE_TIMEOUT):
            return True
        with self._lock:
            try:
                self._idle.remove(runner)
                return False
            except ValueError:  # a task was being handed over as the wait ended
                pass
        runner.ready.acquire()
        return True


_pool = _Pool()


class PooledThread:
    """Stands in for ``threading.Thread`` as python-engineio's ``thread`` class: the same
    constructor, :meth:`start`, :meth:`join`, :meth:`is_alive`, run on a pool thread.

    :param target: what to run.
    :param args: its positional arguments.
    :param kwargs: its keyword arguments.
    :param name: the task's name (the thread running it keeps its own).
    :param daemon: ignored: pool threads are daemons, as Engine.IO's threads are.
    """

    def __init__(self, group: None = None, target: Callable[..., Any] | None = None,
                 name: str | None = None, args: tuple = (), kwargs: dict | None = None, *,
                 daemon: bool | None = None) -> None:
        self._target = target
        self._args = args
        self._kwargs = kwargs or {}
        self.name = name or f"task-{next(_names)}"
        self.daemon = True
        self._started = False
        self._done = threading.Event()

    def start(self) -> None:
        """Run the task on an idle pool thread (a new one if none is idle)."""
        if self._started:
            raise RuntimeError("tasks can only be started once")
        self._started = True
        _pool.start(self)

    def run(self) -> None:
        """Run the task in the calling thread (``threading.Thread.run``'s part)."""
        if self._target is not None:
            self._target(*self._args, **self._kwargs)

    def run_here(self) -> None:
        """Run the task in a fresh context; report an exception as a thread would."""
        try:
            contextvars.Context().run(self.run)
        except BaseException:  # noqa: BLE001 - what threading.Thread does with it
            exc_type, exc_value, tb = sys.exc_info()
            threading.excepthook(threading.ExceptHookArgs(  # type: ignore[attr-defined]
                (exc_type, exc_value, tb, threading.current_thread())))
            del exc_type, exc_value, tb
        finally:
            self._target = self._args = self._kwargs = None  # type: ignore[assignment]
            self._done.set()

    def join(self, timeout: float | None = None) -> None:
        """Wait until the task has run (at most ``timeout`` seconds)."""
        if not self._started:
            raise RuntimeError("cannot join a task before it is started")
        self._done.wait(timeout)

    def is_alive(self) -> bool:
        """Started and not yet done."""
        return self._started and not self._done.is_set()


def install(eio_server: Any) -> None:
    """Make ``eio_server`` (a python-engineio Server in threading mode) run its background
    tasks, python-socketio's and the app's, on :class:`PooledThread`."""
    eio_server._async = {**eio_server._async, "thread": PooledThread}
