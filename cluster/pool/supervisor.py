"""The worker processes as processes: fork them, reap them, signal them.

What a worker is to the master once forked (:class:`cluster.pool.worker.Worker`) and what
state it is in (:class:`cluster.pool.pool.WorkerPool`) live elsewhere: this module only makes
processes, so that the pool can be driven by fake ones in tests.
"""
from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import time
from typing import Callable, NoReturn

from cluster.protocol import frames
from cluster.protocol.frames import Kind
from cluster.protocol.resident import resident_bytes
from cluster.protocol.spec import WorkerSpec, runtime_class
from cluster.setup.config import Bind, Settings
from cluster.setup.hooks import Hooks, WorkerInfo
from cluster.setup.options import worker_options
from cluster.setup.proctitle import set_title

from .pool_wiring import Watcher
from .template import WorkerTemplate

log = logging.getLogger("sticky_cluster.master")

BOOT_ERROR = 3
"""Exit code of a worker that could not boot."""

IGNORED_IN_WORKERS = (signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGUSR1,
                      signal.SIGUSR2, signal.SIGTTIN, signal.SIGTTOU, signal.SIGWINCH)
"""Signals a worker ignores: the master drives workers through their channel."""


class Forker:
    """Starts worker processes, forked from the workers' template (:mod:`.template`) when it
    is warm, else from the master; and reaps them.

    The pool's process starter: it knows how a worker process is made, nothing of
    what the pool does with it.

    :param settings: what a worker is told (its :class:`WorkerSpec`), and the user and
                     groups it switches to before it loads the app (``identity``).
    :param binds: where the master listens (a worker tells its app the first).
    :param forget_in_child: closes, in a new child, everything of the master's it
                            inherited (listeners, selector, other workers' channels).
    :param hooks: the user's ``pre_fork``, ``post_fork`` and ``worker_exit`` are called
                  with ``owner`` (the master) and a :class:`~cluster.setup.hooks.WorkerInfo`.
    """

    def __init__(self, settings: Settings, binds: Callable[[], list[Bind]],
                 forget_in_child: Callable[[], None], hooks: Hooks | None = None,
                 owner: object = None) -> None:
        self._settings = settings
        self._identity = settings.identity
        self._binds = binds
        self.runtime = settings.runtime
        """The worker runtime's name (resolved by the master's pre-flight check)."""
        self.host = 0
        """This host's id, in every sid the workers make (several hosts: set once claimed)."""
        self._forget_in_child = forget_in_child
        self._hooks = hooks or Hooks()
        self._owner = owner
        self._forked: dict[int, tuple[int, int]] = {}
        """pid -> (slot, tag) of the workers forked and not reaped yet."""
        self._template: WorkerTemplate | None = None
        self._when_warm: Callable[[], None] | None = None
        """What waits for the template renewed last to be warm (a rolling restart)."""
        self._warm_by = 0.0
        """When that wait ends anyway (monotonic seconds)."""

    def warm_up(self, timeout: float) -> None:
        """Start the workers' template and wait until it is warm (at most ``timeout`` s):
        before the first workers, so that they all fork from it."""
        self.renew_template()
        if self._template is not None:
            self._template.wait_ready(timeout)

    def renew_template(self, watcher: Watcher | None = None,
                       then: Callable[[], None] | None = None) -> None:
        """Replace the workers' template by a new one (a rolling restart: upgraded
        libraries load).

        ``then`` (a rolling restart) is called from the master's loop (``watcher``) once
        the new template is warm, or could not be (it failed, died, or was not warm within
        ``--boot-timeout``: :meth:`tick`): the roll's workers fork from it, or else from the
        master. A renewal before that replaces the one waited for.
        """
        if self._template is not None:
            self._template.stop()
        if isinstance(self._settings.target, str):  # an app object is forked with the master
            self._template = WorkerTemplate(self.runtime, self._leave_master, self._serve)
            self._template.start()
        if then is None or watcher is None:
            return
        if self._template is None:
            then()
            return
        self._when_warm = then
        self._warm_by = time.monotonic() + self._settings.boot_timeout
        self._template.on_answer(watcher, self._template_answered)

    def tick(self, now: float) -> None:
        """Give up a template that is not warm by its deadline (see :meth:`renew_template`)."""
        if self._when_warm is not None and now >= self._warm_by:
            log.warning("worker template %s not warm within %g s (--boot-timeout): the master "
                        "forks the workers itself until the next rolling restart",
                        self._template.pid if self._template else None,
                        self._settings.boot_timeout)
            if self._template is not None:
                self._template.stop()
            self._template_answered()

    def _template_answered(self) -> None:
        then, self._when_warm = self._when_warm, None
        if then is not None:
            then()

    def close(self) -> None:
        """The master ends: stop the template."""
        if self._template is not None:
            self._template.close()

    def start(self, slot: int, tag: int, warm: bool = True) -> tuple[int, socket.socket]:
        """Fork a worker for ``slot`` tagged ``tag``: its pid and the master's end of its
        channel (non-blocking). The ``pre_fork`` hook runs first.

        ``warm``: fork it from the template when the template is warm; else (a dead
        worker's successor, see :meth:`cluster.pool.pool.WorkerPool`) from the master."""
        self._hooks.call("pre_fork", self._owner, WorkerInfo(slot, tag))
        master_end, worker_end = frames.socket_pair()
        spec = self._spec_for(slot, tag)
        sys.stdout.flush()
        sys.stderr.flush()
        tried_template = warm and self._template is not None
        pid = self._template.fork(spec, worker_end) if tried_template else None
        if pid is not None:
            log.debug("worker %d (slot %d) forked from the template %d", pid, slot,
                      self._template.pid)
        else:
            if tried_template:
                # A template that answered too late may still have forked a worker on
                # this channel: the master's own worker gets a new one, and that late
                # worker finds its master's end closed and exits, instead of sharing it.
                master_end.close()
                worker_end.close()
                master_end, worker_end = frames.socket_pair()
            pid = os.fork()
            if pid == 0:
                master_end.close()
                self._become_worker(spec, worker_end)
            log.debug("worker %d (slot %d) forked from the master", pid, slot)
        worker_end.close()
        master_end.setblocking(False)
        self._forked[pid] = (slot, tag)
        return pid, master_end

    def _spec_for(self, slot: int, tag: int) -> WorkerSpec:
        settings = self._settings
        first = (self._binds() or settings.binds)[0]
        return WorkerSpec(
            target=settings.target, slot=slot, tag=tag,
            heartbeat_interval=settings.heartbeat_interval,
            server_address=first.address, family=first.family,
            hand_back=settings.route == "sid",
            place_new_sessions=settings.route == "sid" and settings.balance != "ip",
            host=self.host, **worker_options(settings))

    def _become_worker(self, spec: WorkerSpec, sock: socket.socket) -> NoReturn:
        """In a child forked from the master: leave the master, then serve as a worker."""
        try:
            self._leave_master()
        except BaseException as exc:  # noqa: BLE001 - the child must never return to the master's loop
            self._failed_to_boot(spec, sock, exc)
        self._serve(spec, sock)

    def _leave_master(self) -> None:
        """In a new child of the master: a worker's signals, none of the master's files, the
        user and groups the workers run as."""
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for signum in IGNORED_IN_WORKERS:
            signal.signal(signum, signal.SIG_IGN)
        self._forget_in_child()
        if self._identity is not None:
            self._identity.become()

    def _serve(self, spec: WorkerSpec, sock: socket.socket) -> NoReturn:
        """In a worker that has left the master: the ``post_fork`` hook, then serve until
        drained, then exit (never returns)."""
        try:
            self._hooks.call("post_fork", self._owner, WorkerInfo(spec.slot, spec.tag, os.getpid()))
            target = spec.target if isinstance(spec.target, str) else type(spec.target).__name__
            set_title(f"worker {spec.slot} {target}")
            runtime_class(self.runtime)(spec, sock).serve()
        except BaseException as exc:  # noqa: BLE001 - the child must never return to the master's loop
            self._failed_to_boot(spec, sock, exc)
        logging.shutdown()
        os._exit(0)

    @staticmethod
    def _failed_to_boot(spec: WorkerSpec, sock: socket.socket, exc: BaseException) -> NoReturn:
        """Say why the worker could not boot (the log, and the master), then exit; a
        ``SystemExit`` exits with its code (1 when it is not a number), saying nothing."""
        code = BOOT_ERROR
        try:
            if isinstance(exc, SystemExit):
                code = exc.code if isinstance(exc.code, int) else 1
            else:
                error = getattr(exc, "__module__", "").startswith("workers.") and str(exc)
                # Our errors are one line (their traceback at debug level); others come with theirs.
                shown = exc if not error or log.isEnabledFor(logging.DEBUG) else None
                log.error("worker %d (slot %d) failed to boot: %s", os.getpid(), spec.slot,
                          error or f"{type(exc).__name__}: {exc}", exc_info=shown)
                _report_boot_failure(sock, error or f"{type(exc).__name__}: {exc}")
        finally:
            logging.shutdown()
            os._exit(code)

    @staticmethod
    def memory(pid: int) -> int | None:
        """Bytes of resident memory of ``pid``; None when it is gone."""
        return resident_bytes(pid)

    def reap(self) -> list[tuple[int, int]]:
        """Collect every child that has exited: (pid, wait status) pairs; the
        ``worker_exit`` hook runs for each worker among them."""
        dead = []
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            if self._template is not None and self._template.exited(pid, describe_exit(status)):
                self._template_answered()
                continue
            dead.append((pid, status))
            if pid in self._forked:
                slot, tag = self._forked.pop(pid)
                self._hooks.call("worker_exit", self._owner,
                                 WorkerInfo(slot, tag, pid, describe_exit(status)))
        return dead


def send_signal(pid: int, signum: int) -> None:
    """``os.kill``, quiet when the process is already gone."""
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _report_boot_failure(sock: socket.socket, error: str) -> None:
    """Tell the master, in a forked worker, why it could not boot (best effort)."""
    line = " ".join(error.split())[:1000] or "unknown error"
    try:
        for packet in frames.packets(Kind.BOOT_FAILED, line.encode(errors="replace")):
            frames.send_packet(sock, packet)
    except OSError:
        pass


def describe_exit(status: int) -> str:
    """``exit code N`` or ``signal NAME`` for a wait status."""
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        try:
            return f"signal {signal.Signals(signum).name}"
        except ValueError:
            return f"signal {signum}"
    return f"exit code {os.waitstatus_to_exitcode(status)}"
