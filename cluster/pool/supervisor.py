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
from typing import Callable

from cluster.protocol import frames
from cluster.protocol.frames import Kind
from cluster.protocol.spec import WorkerSpec, runtime_class
from cluster.setup.config import Bind, Settings
from cluster.setup.hooks import Hooks, WorkerInfo
from cluster.setup.options import worker_options
from cluster.setup.proctitle import set_title

log = logging.getLogger("sticky_cluster.master")

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
BOOT_ERROR = 3
"""Exit code of a worker that could not boot."""

IGNORED_IN_WORKERS = (signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGUSR1,
                      signal.SIGUSR2, signal.SIGTTIN, signal.SIGTTOU, signal.SIGWINCH)
"""Signals a worker ignores: the master drives workers through their channel."""


class Forker:
    """Starts worker processes by forking the master, and reaps them.

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

    def start(self, slot: int, tag: int) -> tuple[int, socket.socket]:
        """Fork a worker for ``slot`` tagged ``tag``: its pid and the master's end of its
        channel (non-blocking). The ``pre_fork`` hook runs first."""
        self._hooks.call("pre_fork", self._owner, WorkerInfo(slot, tag))
        master_end, worker_end = frames.socket_pair()
        spec = self._spec_for(slot, tag)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            master_end.close()
            self._become_worker(spec, worker_end)
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

    def _become_worker(self, spec: WorkerSpec, sock: socket.socket) -> None:
        code = 0
        try:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            for signum in IGNORED_IN_WORKERS:
                signal.signal(signum, signal.SIG_IGN)
            self._forget_in_child()
            if self._identity is not None:
                self._identity.become()
            self._hooks.call("post_fork", self._owner, WorkerInfo(spec.slot, spec.tag, os.getpid()))
            target = spec.target if isinstance(spec.target, str) else type(spec.target).__name__
            set_title(f"worker {spec.slot} {target}")
            runtime_class(self.runtime)(spec, sock).serve()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException as exc:  # noqa: BLE001 - the child must never return to the master's loop
            error = getattr(exc, "__module__", "").startswith("workers.") and str(exc)
            # Our errors are one line (their traceback at debug level); others come with theirs.
            shown = exc if not error or log.isEnabledFor(logging.DEBUG) else None
            log.error("worker %d (slot %d) failed to boot: %s", os.getpid(), spec.slot,
                      error or f"{type(exc).__name__}: {exc}", exc_info=shown)
            _report_boot_failure(sock, error or f"{type(exc).__name__}: {exc}")
            code = BOOT_ERROR
        finally:
            logging.shutdown()
            os._exit(code)

    @staticmethod
    def memory(pid: int) -> int | None:
        """Bytes of resident memory of ``pid`` (``/proc/PID/statm``); None when it is gone."""
        try:
            with open(f"/proc/{pid}/statm", "rb") as statm:
                return int(statm.read().split()[1]) * PAGE_SIZE
        except (OSError, IndexError, ValueError):
            return None

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
