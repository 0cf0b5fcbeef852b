"""The forwarder process, as the master supervises it (several hosts only).

With several hosts the master forks one more child beside its workers: the forwarder
(:func:`cluster.hosts.forwarder.serve`), which relays a request whose sid names another
host to that host, keeps this host's entry in the directory of hosts alive, and tells
the master the directory (``HOSTS``). This module is the master's side of it: fork it
(outside the worker pool: it serves no session and never loads the app), watch its
channel as a worker's (:class:`cluster.pool.worker.Worker` does the channel I/O), respawn
it after a backoff when it dies (:class:`cluster.pool.backoff.RespawnBackoff`), kill it
when it is silent past ``--timeout``, drain it first on a graceful stop (it gives its
lease up: the host leaves the directory before the workers drain), and kill it at the
end. It dies with the master: on EOF of its channel it exits at once.

Its messages go to the master through :class:`ForwarderHooks`: up or down (the
dispatcher then hands it connections, or holds them), a connection handed back (a
request for this host), the directory and counters (for the intake's peers, ``/metrics``
and the status page). Like the pool, it makes its system calls through injected parts
(a forker, a killer, a clock, a watcher) so that tests drive it without a process.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import os
import selectors
import signal
import socket
import sys
import time
from typing import Callable

from cluster.hosts.forwarder_config import ForwarderConfig
from cluster.protocol import frames
from cluster.protocol.frames import Kind
from cluster.setup.privileges import Identity
from cluster.setup.proctitle import set_title

from .backoff import RespawnBackoff
from .pool_wiring import Watcher
from .supervisor import IGNORED_IN_WORKERS, describe_exit, send_signal
from .worker import State, Worker

log = logging.getLogger("sticky_cluster.master")

READ_BATCH = 256
"""Packets read from the forwarder per wake-up."""
SLOT = -1
"""The forwarder's slot in its :class:`Worker` record: none of the pool's."""


class ForwarderLink(Worker):
    """The master's record of the forwarder process and of its channel."""

    def __str__(self) -> str:
        return f"forwarder {self.pid}"


def _nothing(*_args: object) -> None:
    """A hook nobody listens to."""


@dataclasses.dataclass
class ForwarderHooks:
    """What the master hears from the forwarder. Each hook is called from the loop."""

    up: Callable[[ForwarderLink | None], None] = _nothing
    """The forwarder serves (its link), or no longer does (None): hand it connections or hold them."""
    hand_back: Callable[[int, tuple[str, int], bytes], None] = _nothing
    """A connection whose request is for this host: (client fd, address, bytes read)."""
    hosts: Callable[[dict], None] = _nothing
    """The directory of hosts and the forwards' counters (a ``HOSTS`` message, parsed)."""
    stranded: Callable[[bytes, int], None] = _nothing
    """A hand-off (packet, client fd) was queued for a forwarder that died: route it again."""


def fork_forwarder(config: ForwarderConfig, forget_in_child: Callable[[], None],
                   identity: Identity | None) -> tuple[int, socket.socket]:
    """Fork the forwarder process: its pid and the master's end of its channel
    (non-blocking). The child forgets the master's files (``forget_in_child``), becomes
    the workers' user (``identity``), imports the forwarder (asyncio, the broker
    client: never in the master) and serves; it never returns."""
    master_end, child_end = frames.socket_pair()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            master_end.close()
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            for signum in IGNORED_IN_WORKERS:
                signal.signal(signum, signal.SIG_IGN)
            forget_in_child()
            if identity is not None:
                identity.become()
            set_title("forwarder")
            from cluster.hosts.forwarder import serve

            serve(child_end, config)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:  # noqa: BLE001 - the child must never return to the master's loop
            log.exception("the forwarder %d failed", os.getpid())
        finally:
            logging.shutdown()
            os._exit(code)
    child_end.close()
    master_end.setblocking(False)
    return pid, master_end


class ForwarderProcess:
    """Forks, watches, respawns and stops the forwarder.

    :param config: what the forwarder is told (made when it is forked: the host id is
                   claimed by then).
    :param hooks: what the master hears.
    :param timeout: seconds of silence after which it is killed (``--timeout``).
    :param fork: starts the process: (pid, the master's end of its channel).
    :param kill: sends a signal to a pid.
    :param clock: monotonic seconds.
    """

    def __init__(self, config: Callable[[], ForwarderConfig], hooks: ForwarderHooks,
                 timeout: float, fork: Callable[[ForwarderConfig], tuple[int, socket.socket]],
                 kill: Callable[[int, int], None] = send_signal,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._config = config
        self._hooks = hooks
        self._timeout = timeout
        self._fork = fork
        self._kill = kill
        self._clock = clock
        self._watcher: Watcher | None = None
        self._backoff = RespawnBackoff()
        self._due: float | None = None
        self.link: ForwarderLink | None = None
        """The live forwarder process (booting, serving or draining), if any."""
        self.stopping = False
        self.respawns = 0
        """Forwarders started again after one died."""
        self.hosts: dict = {}
        """Its last ``HOSTS`` message: the directory and the forwards' counters."""

    @property
    def alive(self) -> bool:
        """Whether a forwarder process runs (not reaped yet)."""
        return self.link is not None

    @property
    def up(self) -> bool:
        """Whether it serves: it said READY and drains not."""
        return self.link is not None and self.link.state is State.SERVING

    def attach(self, watcher: Watcher) -> None:
        """Have ``watcher`` (the master's loop) wake us for the forwarder's channel."""
        self._watcher = watcher

    def start(self) -> None:
        """Fork the forwarder now."""
        self._due = None
        pid, sock = self._fork(self._config())
        now = self._clock()
        self.link = ForwarderLink(pid=pid, slot=SLOT, tag=0, sock=sock, born=now, last_seen=now)
        self.link.on_backlog = self._watch
        self._watch(self.link)
        log.info("%s booting", self.link)

    def tick(self, now: float) -> None:
        """Respawn it when its backoff is over; kill it when it is silent past the timeout."""
        link = self.link
        if link is None:
            if self._due is not None and now >= self._due and not self.stopping:
                self.respawns += 1
                self.start()
        elif not link.killed and now - link.last_seen > self._timeout:
            self._kill_link(f"no heartbeat for {now - link.last_seen:.1f} s (--timeout "
                            f"{self._timeout:g})")

    def exited(self, pid: int, status: int) -> bool:
        """Take note that child ``pid`` exited; False when it is not the forwarder."""
        link = self.link
        if link is None or link.pid != pid:
            return False
        if not link.killed:
            self._on_channel(link, link.sock, selectors.EVENT_READ)  # its last words
        self._unwatch(link)
        was_up = link.state is State.SERVING
        self.link = None
        stranded = link.discard_outbox()
        link.sock.close()
        lived = self._clock() - link.born
        how = describe_exit(status)
        if self.stopping:
            log.info("%s stopped (%s; lived %.1f s)", link, how, lived)
        else:
            delay, streak = self._backoff.delay(0, lived)
            self._due = self._clock() + delay
            log.warning("%s died (%s; lived %.1f s): connections of other hosts are held "
                        "until it is back%s", link, how, lived,
                        f" (respawn in {delay:.1f} s, crash {streak} in a row)" if delay else "")
        if was_up:
            self._hooks.up(None)
        for packet, fd in stranded:
            self._hooks.stranded(packet, fd)
        return True

    def drain(self) -> None:
        """Graceful stop: the forwarder gives its lease up (the host leaves the
        directory), finishes its open connections within ``--graceful-timeout``, exits."""
        self.stopping = True
        link = self.link
        if link is None:
            return
        if link.state is State.SERVING:
            self._hooks.up(None)
        link.state = State.DRAINING
        for packet in frames.packets(Kind.DRAIN):
            link.send(packet)
        log.info("%s draining: this host leaves the directory of hosts", link)

    def terminate(self) -> None:
        """Fast stop: SIGTERM it."""
        self.stopping = True
        if self.link is not None:
            if self.link.state is State.SERVING:
                self._hooks.up(None)
            self._kill(self.link.pid, signal.SIGTERM)

    def kill(self, why: str) -> None:
        """SIGKILL it (once), saying why."""
        self.stopping = True
        if self.link is not None:
            self._kill_link(why)

    def close_in_child(self) -> None:
        """In a new child: close the master's end of the forwarder's channel."""
        if self.link is not None:
            for _packet, fd in self.link.discard_outbox():
                os.close(fd)
            self.link.sock.close()

    # ------------------------------------------------------------------ channel

    def _kill_link(self, why: str) -> None:
        link = self.link
        if link is None or link.killed:
            return
        log.warning("%s killed with SIGKILL: %s", link, why)
        link.killed = True
        self._kill(link.pid, signal.SIGKILL)

    def _watch(self, link: Worker) -> None:
        if self._watcher is not None:
            events = selectors.EVENT_READ | (selectors.EVENT_WRITE if link.wants_write else 0)
            self._watcher.watch(link.sock, events, functools.partial(self._on_channel, link))

    def _unwatch(self, link: Worker) -> None:
        if self._watcher is not None:
            self._watcher.unwatch(link.sock)

    def _on_channel(self, link: Worker, _sock: object, mask: int) -> None:
        if mask & selectors.EVENT_WRITE:
            link.flush()
        if not mask & selectors.EVENT_READ:
            return
        try:
            for kind, value, fd in link.receive(READ_BATCH):
                link.last_seen = self._clock()
                if kind is Kind.HANDBACK:
                    self._hooks.hand_back(fd, *value)  # type: ignore[arg-type, misc]
                elif kind is Kind.HOSTS:
                    self.hosts = value  # type: ignore[assignment]
                    self._hooks.hosts(value)  # type: ignore[arg-type]
                elif kind is Kind.HEARTBEAT:
                    link.sessions = value.sessions  # type: ignore[attr-defined]
                elif kind is Kind.READY:
                    if link.state is State.BOOTING and not self.stopping:
                        link.state = State.SERVING
                        log.info("%s ready after %.1f s", link, self._clock() - link.born)
                        self._hooks.up(link)  # type: ignore[arg-type]
                elif kind is Kind.BOOT_FAILED:
                    log.error("%s failed: %s", link, value)
                else:
                    raise frames.ProtocolError(f"{kind.name} is no forwarder's message")
        except EOFError:  # it is gone; its exit is reaped
            self._unwatch(link)
        except frames.ProtocolError as exc:
            self._unwatch(link)
            self._kill_link(f"protocol violation: {exc}")
        except Exception:  # noqa: BLE001 - its message must never end the master
            log.exception("%s: its message could not be handled", link)
            self._unwatch(link)
            self._kill_link("its message could not be handled (traceback above)")
