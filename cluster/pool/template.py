"""The workers' template: a warm child of the master that forks the workers.

A worker forked straight from the master must patch its runtime and import its libraries
(eventlet or gevent, python-socketio, python-engineio, the worker's own modules) before it
can load the app: 0.5-1 s of CPU per worker, paid again by every replacement, which on a
busy host makes a dead worker's successor ready seconds after its clients started to
reconnect (docs/benchmarks.md, the kill storm). The master cannot do that work itself
(it never imports a runtime: monkey-patching is for the workers). So it forks one template
first, which patches the runtime and imports the libraries once, then waits; each worker
is then a fork of the template, ready as soon as its app is loaded.

The app itself is still imported by each worker after the fork, as before (a rolling
restart loads the new code); the template is renewed at each rolling restart, so that
upgraded libraries are loaded too.

A worker stays the master's child: the master is a child subreaper, and the template
forks each worker through a short-lived intermediate process that exits at once, so the
worker is re-parented to the master, which reaps and signals it as any other. Whenever the
template is not ready (booting, dead, or never started: an app given as an object), the
master forks the worker itself, as it did before.
"""
from __future__ import annotations

import ctypes
import logging
import os
import pickle
import selectors
import signal
import socket
import time
from typing import TYPE_CHECKING, Callable, NoReturn

from cluster.protocol.spec import WorkerSpec, runtime_class

if TYPE_CHECKING:
    from .pool_wiring import Watcher

log = logging.getLogger("sticky_cluster.master")

PR_SET_CHILD_SUBREAPER = 36
"""``prctl`` option (linux/prctl.h): orphans below this process are re-parented to it."""

TITLE = "worker template"
"""The template's process title (:mod:`cluster.setup.proctitle`), then its runtime."""

READY = b"R"
"""The template's first message: warm, ready to fork."""

FORK_TIMEOUT = 2.0
"""Seconds the master waits for a fork's pid before it gives the template up."""

REQUEST_LIMIT = 1 << 20
"""The largest fork request (a pickled :class:`WorkerSpec`) the template reads."""


def become_subreaper() -> bool:
    """Make this process the parent that orphans below it are re-parented to; False where
    the kernel cannot (not Linux, or older than 3.4)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


class WorkerTemplate:
    """The master's handle on its template process.

    :param runtime: the workers' runtime (a key of :data:`cluster.protocol.spec.RUNTIMES`).
    :param leave_master: run first in the new template: what a forked worker does to stop
                         being the master (signals, the master's files, the user switch).
    :param serve: run in each worker forked from the template, with its spec and channel;
                  never returns.
    """

    def __init__(self, runtime: str, leave_master: Callable[[], None],
                 serve: Callable[[WorkerSpec, socket.socket], NoReturn]) -> None:
        self._runtime = runtime
        self._leave_master = leave_master
        self._serve = serve
        self.pid: int | None = None
        self._sock: socket.socket | None = None
        self._ready = False
        self._born = 0.0
        self._watcher: Watcher | None = None
        """The master's loop, while it waits for the template's answer (:meth:`on_answer`)."""

    def start(self) -> None:
        """Fork the template (it warms up in the background; :meth:`fork` uses it once ready)."""
        if self.pid is not None or not become_subreaper():
            return
        master_end, template_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:
            master_end.close()
            self._run_template(template_end)
        template_end.close()
        self.pid, self._sock, self._ready, self._born = pid, master_end, False, time.monotonic()

    def wait_ready(self, timeout: float) -> bool:
        """Block until the template is warm (at most ``timeout`` s): before the first workers."""
        return self._check_ready(timeout)

    def on_answer(self, watcher: Watcher, then: Callable[[], None]) -> None:
        """Call ``then`` from the master's loop once the template has said it is warm, or
        has failed to warm up (at once without a template). Not after :meth:`stop` or
        :meth:`exited`: the caller learns of those itself."""
        sock = self._sock
        if sock is None or self._ready:
            then()
            return

        def answered(_sock: object, _mask: int) -> None:
            self._unwatch()
            self._check_ready(0)
            then()

        self._watcher = watcher
        watcher.watch(sock, selectors.EVENT_READ, answered)

    def fork(self, spec: WorkerSpec, worker_end: socket.socket) -> int | None:
        """Fork a worker from the template: its pid, or None (not ready, or it failed; the
        caller forks the worker itself)."""
        if self._sock is None or not self._check_ready(0):
            return None
        try:
            self._sock.settimeout(FORK_TIMEOUT)
            socket.send_fds(self._sock, [pickle.dumps(spec)], [worker_end.fileno()])
            reply = self._sock.recv(64)
            return int(reply)
        except (OSError, ValueError) as exc:
            log.warning("worker template %s failed to fork a worker (%s): the master forks "
                        "the workers itself until the next rolling restart starts a new one",
                        self.pid, exc or "no reply")
            self.stop()
            return None

    def exited(self, pid: int, describe: str) -> bool:
        """Whether ``pid`` was the template (then forget it: the next worker is forked by
        the master, and a new template started)."""
        if pid != self.pid:
            return False
        if self._sock is not None:
            log.warning("worker template %d exited (%s): the master forks the workers itself "
                        "until the next rolling restart starts a new one", pid, describe)
            self._unwatch()
            self._sock.close()
        self.pid, self._sock, self._ready = None, None, False
        return True

    def stop(self) -> None:
        """Stop the template (it is reaped with the other children)."""
        if self._sock is not None:
            self._unwatch()
            self._sock.close()
            self._sock = None
        self._ready = False
        if self.pid is not None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def close(self) -> None:
        """The master ends: stop the template and wait for it."""
        pid = self.pid
        self.stop()
        if pid is not None:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
            self.pid = None

    def _unwatch(self) -> None:
        if self._watcher is not None and self._sock is not None:
            self._watcher.unwatch(self._sock)
        self._watcher = None

    def _check_ready(self, timeout: float) -> bool:
        if self._ready:
            return True
        if self._sock is None:
            return False
        self._sock.settimeout(timeout)
        try:
            message = self._sock.recv(16)
        except (BlockingIOError, socket.timeout):
            return False
        except OSError:
            message = b""
        if message != READY:  # it failed to warm up and exits: fork from the master
            log.info("worker template %s could not warm up (the reason is in the log at debug "
                     "level): the master forks the workers itself", self.pid)
            self.stop()
            return False
        self._ready = True
        log.info("worker template %d ready after %.1f s (workers fork from it)", self.pid,
                 time.monotonic() - self._born)
        return True

    # ------------------------------------------------------------ in the template

    def _run_template(self, sock: socket.socket) -> NoReturn:
        """The template's life: warm up, then fork a worker for each request until the
        master closes its end."""
        code = 0
        try:
            self._leave_master()
            from cluster.setup.proctitle import set_title

            set_title(f"{TITLE} ({self._runtime})")
            runtime_class(self._runtime).warm()
            sock.send(READY)
            while True:
                message, fds, _flags, _address = socket.recv_fds(sock, REQUEST_LIMIT, 1)
                if not message:
                    break  # the master closed its end, or exited
                self._fork_worker(sock, pickle.loads(message), fds[0])
        except BaseException as exc:  # noqa: BLE001 - never return into the master's code
            log.debug("worker template %d: %s: %s", os.getpid(), type(exc).__name__, exc)
            code = 1
        finally:
            os._exit(code)

    def _fork_worker(self, sock: socket.socket, spec: WorkerSpec, fd: int) -> None:
        """Fork the worker through an intermediate process that exits at once (the worker
        is re-parented to the master, the subreaper); tell the master its pid."""
        read_end, write_end = os.pipe()
        intermediate = os.fork()
        if intermediate == 0:
            sock.close()
            os.close(read_end)
            worker = os.fork()
            if worker == 0:
                os.close(write_end)
                self._serve(spec, socket.socket(fileno=fd))
            os.write(write_end, str(worker).encode())
            os._exit(0)
        os.close(write_end)
        os.close(fd)
        pid = os.read(read_end, 32)
        os.close(read_end)
        os.waitpid(intermediate, 0)
        sock.send(pid)
