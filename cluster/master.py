"""The master: one process, one thread, one selectors loop.

It listens, hands each new connection to a worker (:mod:`cluster.dispatch`), relays
pub/sub messages between workers, and supervises them. Signals (and the embedding
API's method calls) are queued and handled by the loop, one ``handle_<signal>``
method each, as in gunicorn's arbiter; never inside a signal handler.
"""
from __future__ import annotations

import collections
import functools
import importlib
import logging
import os
import selectors
import signal
import subprocess
import sys
import time
from typing import Callable

from protocol import adapters, frames
from protocol.frames import Kind
from protocol.spec import AUTO, LOADER, RUNTIMES, WorkerSpec

from . import listeners, own
from .broker_check import check_broker
from .config import ConfigError, Settings, make_settings
from .options import BALANCES
from .dispatch import ACCEPT_BATCH, Dispatcher
from .events import EventLog
from .limits import raise_open_files_limit
from .logs import configure_logging, reopen_log_files
from .options import worker_options
from .pidfile import PidFile, PidFileError, StatusFile
from .proctitle import set_title
from .supervisor import State, Supervisor, Worker, describe_exit
from .systemd import Notifier, inherited_listeners

log = logging.getLogger("sticky_cluster.master")

HANDLED_SIGNALS = ("HUP", "QUIT", "INT", "TERM", "TTIN", "TTOU", "USR1", "CHLD")
STOP_SIGNALS = (signal.SIGQUIT, signal.SIGINT, signal.SIGTERM)
FAST_STOP_TIMEOUT = 5.0
"""Seconds workers get to exit on a fast stop before SIGKILL."""
DRAIN_GRACE = 5.0
"""Seconds past ``graceful_timeout`` a draining worker gets before SIGKILL."""
BOOT_FAILURE_LIMIT = 3
"""Workers in a row that die before ready make the master give up."""
BOOT_TIMEOUT = 30.0
"""Seconds a new worker gets to report ready, at least (``timeout`` when longer)."""
LATE_BEATS = 2.5
"""Heartbeat intervals of silence after which a worker is late: new clients go elsewhere."""
STABLE_LIFE = 10.0
"""Seconds a worker must live for its slot's crash streak (and respawn backoff) to reset."""
READ_BATCH = 256
"""Packets read from one worker per wake-up, so that a chatty worker cannot hold the loop."""
ACCEPT_PAUSE = 0.5
"""Seconds the master stops accepting when it runs out of file descriptors."""
ACCEPT_LINGER = 0.002
"""Seconds the master leaves the listeners alone after accepting a few connections, so
that under load one wake-up hands off a batch: the loop's cost per wake-up, not per
connection, is most of its CPU (measured with 2 workers at ~2,300 handshakes/s: 48 µs
per handshake without, 27 µs with). A lone connection is not delayed; one that follows
it waits 2 ms at most. The loop serves the workers' channels meanwhile (the listeners
are out of the selector, whose timeout ends the linger): relay traffic and heartbeats
never wait for it."""
IDLE_WAKE = 0.25
"""Seconds the loop sleeps at most when nothing happens, for its timers."""
OPERATIONS_TICK = 0.1
"""Seconds between two looks at the status server, control socket and systemd watchdog,
and between two scans of the workers' heartbeats and deadlines."""
REAP_INTERVAL = 1.0
"""Seconds between two reaps without a CHLD: a safety net, as gunicorn's reconcile; CHLD
reaps at once."""


class ClusterError(RuntimeError):
    """The cluster cannot start or had to stop; the message is one line for the user."""


class _StoppedEarly(Exception):
    """A stop signal arrived before any worker was forked."""


class Master:
    """Runs a python-socketio app on several worker processes, sticky by client.

    :param app: ``"module:attr"`` / ``"module:factory()"`` naming a ``socketio.Server``,
                a ``socketio.WSGIApp``, a Flask app using Flask-SocketIO, a
                ``socketio.AsyncServer``, a ``socketio.ASGIApp``, an ASGI app with one
                mounted or an aiohttp app with an AsyncServer attached; or the object
                itself. An object is inherited by the forked workers, so a rolling
                restart cannot load new code for it: pass a string for that.

    Every other keyword is an option of ``sticky-cluster run`` by its long name with
    underscores (``workers=4``, ``bind="0.0.0.0:5000"`` or a list, ``pid_file=``,
    ``worker_class="gevent"``); None keeps the default. The options, their defaults and
    meanings are the table :data:`cluster.options.OPTIONS` (README's Options section is
    made from it).
    """

    def __init__(self, app: object, **options: object) -> None:
        self.settings: Settings = make_settings(app, **options)
        self._identity = self.settings.identity
        self._commands: collections.deque[int | Callable[[], None]] = collections.deque()
        self._wake_read, self._wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._selector: selectors.BaseSelector | None = None
        self._listeners: list = []
        self._supervisor = Supervisor(self._spec_for, self.settings.runtime, self._forget_in_child,
                                      self._identity)
        self._dispatcher = Dispatcher(self._supervisor, self.settings, self._watch_worker)
        self._size = self.settings.workers
        self._stopping: str | None = None
        self._stop_deadline = 0.0
        self._halt_reason: str | None = None
        self._boot_failures = 0
        self._respawn_at: dict[int, tuple[float, str]] = {}
        """slot -> (when, why) of a respawn waiting for its backoff."""
        self._crash_streak: dict[int, int] = collections.defaultdict(int)
        self._roll: collections.deque[int] = collections.deque()
        self._rolling: Worker | None = None
        self._accept_paused_until = 0.0
        self._accepting = False
        self._announced_ready = False
        self._pid_file: PidFile | None = None
        self._status: StatusFile | None = None
        self._started = False
        self._early_hup = False
        self._status_changed = False
        self.relay_broadcasts = 0
        """Relay messages handed to every worker."""
        self.relay_unicasts = 0
        """Relay messages handed to the one worker that owns the addressed sid."""
        self.relay_dropped = 0
        """Relay deliveries dropped because a worker's channel queue was full."""
        self.relay_bytes = 0
        """Payload bytes of the relay messages."""
        self.restarts: collections.Counter[str] = collections.Counter()
        """Workers replaced, by reason: crash, timeout (killed), hup, scale."""
        self._slot_restarts: collections.Counter[int] = collections.Counter()
        self._rolls = {"started": 0, "finished": 0, "failure": None}
        self._born = time.monotonic()
        self._turn_started = 0.0
        self._lag = (0.0, 0.0)
        """(the longest loop turn in this window, the previous window's) in seconds."""
        self._lag_window_end = 0.0
        self._operations_due = 0.0
        self._reap_due = 0.0
        self._events = EventLog()
        self._notifier = Notifier()
        self._extras: list = []
        """The status server and the control server, when enabled: served by the loop."""
        self._inherited: set = set()
        """Listeners systemd passed (socket activation): closed but never unlinked."""

    # ----------------------------------------------------------------- public API

    def run(self) -> None:
        """Start the cluster and serve until stopped; raise ClusterError on failure.

        A stop signal that arrives before the workers are forked stops at once; other
        signals wait for the loop (a HUP then has nothing to restart).
        """
        if self.settings.umask is not None:
            os.umask(self.settings.umask)
        configure_logging(self.settings.log_level, self.settings.log_file,
                          self._identity.owner if self._identity else None,
                          self.settings.log_format)
        self._events.attach()
        set_title(f"master {self._target_name()}")
        self._install_signals()
        try:
            self._preflight()
            self._open_listeners()
            if self.settings.pid_file:
                pid_file = PidFile(self.settings.pid_file)
                try:
                    pid_file.create()
                except PidFileError as exc:
                    raise ClusterError(str(exc)) from None
                self._pid_file = pid_file
                self._status = StatusFile(pid_file.path)
            self._open_extras()
            self._started = True
            if self._early_hup:
                log.info("HUP before the workers started: they load the code as it is now")
            for slot in range(self._size):
                self._spawn(slot, "start")
            self._loop()
        except _StoppedEarly as exc:
            log.info("stopped by %s before the workers started", exc)
        except ClusterError:
            raise
        except Exception as exc:  # a bug of ours: say it where the operator looks, then stop
            log.critical("master crashed; stopping every worker", exc_info=True)
            self._supervisor.signal_all(signal.SIGTERM)
            self._halt_reason = (f"master crashed: {type(exc).__name__}: {exc} "
                                 "(the traceback is in the log)")
        finally:
            self._close_listeners()
            self._dispatcher.close()
            for extra in self._extras:
                extra.close()
            self._events.detach()
            if self._status:
                self._status.remove()
            if self._pid_file:
                self._pid_file.remove()
            self._restore_signals()
        log.info("relay totals: %d broadcast, %d unicast, %d dropped", self.relay_broadcasts,
                 self.relay_unicasts, self.relay_dropped)
        log.info("routing totals: %s", self._dispatcher.summary())
        if self._halt_reason:
            raise ClusterError(self._halt_reason)
        log.info("master %d stopped", os.getpid())

    def check(self) -> None:
        """``--check``: load the target and reach the adapter as ``run`` would, then return.

        Raises ClusterError (one line) on the first problem; forks nothing, binds nothing.
        """
        self._preflight()

    def facts(self) -> dict:
        """What the master knows now, for ``/status``, ``/metrics`` and the control socket.

        Plain data (JSON-ready): the workers with their sessions (from their heartbeats),
        the routing, relay and restart counters, the loop's lag and the last events.
        No password: the adapter URL is shown redacted, and so is any URL with
        credentials in the text that comes from elsewhere (log lines, boot errors).
        ``handoffs`` divides every hand-off by why its worker was chosen (they add up
        to the connections handed to a worker, hand-backs included).
        """
        now = time.monotonic()
        dispatcher = self._dispatcher
        by_state = collections.Counter(w.state.value for w in self._supervisor.by_pid.values())
        clean = functools.partial(adapters.redact_text, url=self.settings.adapter)
        failure = self._rolls["failure"]
        handbacks = dispatcher.handed_back + dispatcher.returned
        placed = dispatcher.handed_off - dispatcher.by_sid - dispatcher.rerouted
        return {
            "master": os.getpid(), "size": self._size, "uptime": round(now - self._born, 3),
            "stopping": self._stopping,
            "rolling": self._rolling is not None or bool(self._roll),
            "binds": [str(bind) for _sock, bind in self._listeners],
            "adapter": adapters.redact(self.settings.adapter) if self.settings.adapter else None,
            "workers": [{"slot": w.slot, "pid": w.pid, "state": w.state.value,
                         "sessions": w.sessions, "uptime": round(now - w.born, 3),
                         "heartbeat_age": round(now - w.last_seen, 3),
                         "restarts": self._slot_restarts[w.slot]}
                        for w in sorted(self._supervisor.by_pid.values(),
                                        key=lambda w: (w.slot, w.born))],
            "workers_by_state": {state.value: by_state[state.value] for state in State},
            "handoffs": {"sid": dispatcher.by_sid - handbacks,
                         "handed_back": dispatcher.handed_back, "returned": dispatcher.returned,
                         **{balance: placed if balance == dispatcher.balance else 0
                            for balance in BALANCES},
                         "rerouted": dispatcher.rerouted},
            "placement_skips": {"full": dispatcher.past_full, "late": dispatcher.past_late},
            "connections": {"accepted": dispatcher.accepted, "timed_out": dispatcher.timed_out,
                            "refused": dispatcher.refused, "held": dispatcher.held,
                            "dropped": dispatcher.dropped},
            "restarts": {reason: self.restarts[reason]
                         for reason in ("crash", "timeout", "hup", "scale")},
            "relay": {"broadcast": self.relay_broadcasts, "unicast": self.relay_unicasts,
                      "dropped": self.relay_dropped, "bytes": self.relay_bytes},
            "pending": dispatcher.pending_count,
            "loop_lag": round(max(self._lag), 6),
            "rolls": {**self._rolls, "failure": failure and (failure[0], clean(failure[1]))},
            "events": [{**event, "message": clean(event["message"])}
                       for event in self._events.recent()],
        }

    def reload(self) -> None:
        """Rolling restart: replace every worker, one slot at a time (like SIGHUP)."""
        self._post(self.handle_hup)

    def scale(self, workers: int) -> None:
        """Run ``workers`` worker processes from now on (at least 1)."""
        self._post(lambda: self._scale_to(workers))

    def stop(self, graceful: bool = False) -> None:
        """Stop the cluster: at once (like SIGTERM) or after draining (like SIGQUIT)."""
        self._post(self.handle_quit if graceful else self.handle_term)

    # ------------------------------------------------------------------ signals

    def handle_hup(self) -> None:
        """Rolling restart, slot by slot: new worker ready, then the old one drains.

        A HUP during a roll starts it over, so that every slot ends up on a worker
        forked after the last HUP.
        """
        if self._stopping:
            return
        log.info("rolling restart of %d workers%s", self._size,
                 " (started over)" if self._roll or self._rolling else "")
        self._rolls["started"] += 1
        self._notifier.reloading()
        self._roll = collections.deque(range(self._size))
        self._changed()

    def handle_ttin(self) -> None:
        """One worker more."""
        self._scale_to(self._size + 1)

    def handle_ttou(self) -> None:
        """One worker less (never fewer than one)."""
        self._scale_to(self._size - 1)

    def handle_term(self) -> None:
        """Fast stop: close the listeners, stop the workers, kill what is left."""
        self._begin_stop("fast")

    handle_int = handle_term

    def handle_quit(self) -> None:
        """Graceful stop: close the listeners, let workers drain their sessions."""
        self._begin_stop("graceful")

    def handle_usr1(self) -> None:
        """Reopen the log file now (workers reopen it at their next line by themselves)."""
        reopen_log_files()
        log.info("log files reopened")

    def handle_chld(self) -> None:
        """Reap dead workers; replace them in their slots (also once a second, in case)."""
        for worker, status in self._supervisor.reap():
            self._worker_exited(worker, status)

    # --------------------------------------------------------------------- loop

    def _loop(self) -> None:
        assert self._selector is not None
        while not (self._stopping and not self._supervisor.by_pid):
            events = self._selector.select(self._next_timeout())
            self._turn_started = time.monotonic()
            for key, mask in events:
                key.data(key.fileobj, mask)
            self._run_commands()
            self._tick(time.monotonic())

    def _measure_lag(self, now: float) -> None:
        """Keep the longest loop turn of the current and the previous 10 s window."""
        turn = now - self._turn_started
        current, previous = self._lag
        if now >= self._lag_window_end:
            self._lag_window_end = now + 10.0
            current, previous = 0.0, current
        self._lag = (max(current, turn), previous)

    def _next_timeout(self) -> float:
        """Seconds the next select may wait: until a queued command, or accepting resumes."""
        if self._commands:
            return 0.0
        if self._accept_paused_until:
            return max(0.0, min(IDLE_WAKE, self._accept_paused_until - time.monotonic()))
        return IDLE_WAKE

    def _run_commands(self) -> None:
        while self._commands:
            command = self._commands.popleft()
            if isinstance(command, int):
                name = signal.Signals(command).name[3:].lower()
                getattr(self, f"handle_{name}")()
            else:
                command()

    def _tick(self, now: float) -> None:
        self._measure_lag(now)
        self._dispatcher.expire(now)
        if now >= self._operations_due:  # not on every turn: a turn may be one accept batch
            self._operations_due = now + OPERATIONS_TICK
            self._tick_operations(now)
            self._check_heartbeats(now)
        if self._dispatcher.holding:
            self._dispatcher.release()
        if now >= self._reap_due:
            self._reap_due = now + REAP_INTERVAL
            self.handle_chld()
        if self._accept_paused_until and now >= self._accept_paused_until:
            self._accept_paused_until = 0.0
            self._update_accepting()
        if self._stopping:
            if now >= self._stop_deadline:
                for worker in list(self._supervisor.by_pid.values()):
                    self._kill(worker, "still running at the stop deadline")
                self._stop_deadline = now + FAST_STOP_TIMEOUT
        else:
            for slot, (when, why) in list(self._respawn_at.items()):
                if now >= when:
                    del self._respawn_at[slot]
                    if self._slot_is_empty(slot):
                        self._spawn(slot, why)
            self._step_roll()
        if self._status_changed and self._status is not None:
            self._status_changed = False
            try:
                self._status.write(self._snapshot())
            except (OSError, PidFileError) as exc:
                log.warning("status file %s not written: %s", self._status.path, exc)

    def _tick_operations(self, now: float) -> None:
        """The operators' side: systemd's watchdog and STATUS=, the status and control servers."""
        self._notifier.tick(now)
        if self._announced_ready and self._notifier.enabled:
            self._notifier.status(self._status_line())
        for extra in self._extras:
            extra.tick(now)

    def _status_line(self) -> str:
        """systemd's STATUS=: the workers serving and the sessions they hold."""
        serving = self._supervisor.serving.values()
        return (f"{len(serving)} of {self._size} workers serving, "
                f"{sum(w.sessions for w in serving)} sessions")

    def _changed(self) -> None:
        """Note that the status file is due to be rewritten."""
        self._status_changed = True

    def _snapshot(self) -> dict:
        """What runs now, as ``--pid FILE`` keeps it in ``FILE.json``.

        The size, the serving pid of each slot, the booting and draining pids, and
        whether a roll or a stop is under way.
        """
        by_state: dict[State, list[int]] = {state: [] for state in State}
        for worker in self._supervisor.by_pid.values():
            by_state[worker.state].append(worker.pid)
        return {"master": os.getpid(), "size": self._size,
                "serving": {str(slot): worker.pid
                            for slot, worker in sorted(self._supervisor.serving.items())},
                "booting": sorted(by_state[State.BOOTING]),
                "draining": sorted(by_state[State.DRAINING]),
                "rolling": self._rolling is not None or bool(self._roll),
                "stopping": self._stopping}

    # ------------------------------------------------------------------ workers

    def _spec_for(self, slot: int, tag: int) -> WorkerSpec:
        first = self._listeners[0][1] if self._listeners else self.settings.binds[0]
        return WorkerSpec(
            target=self.settings.target, slot=slot, tag=tag,
            heartbeat_interval=self.settings.heartbeat_interval,
            server_address=first.address, family=first.family,
            hand_back=self.settings.route == "sid", **worker_options(self.settings))

    def _spawn(self, slot: int, why: str) -> Worker:
        worker = self._supervisor.spawn(slot)
        self._watch_worker(worker)
        log.info("%s booting (%s)", worker, why)
        self._changed()
        return worker

    def _slot_is_empty(self, slot: int) -> bool:
        """True when ``slot`` is in use but no worker serves it nor boots for it."""
        return slot < self._size and not any(
            worker.state is not State.DRAINING for worker in self._supervisor.in_slot(slot))

    def _on_worker_event(self, worker: Worker, _sock: object, mask: int) -> None:
        if mask & selectors.EVENT_WRITE and worker.flush():
            self._watch_worker(worker)
        if not mask & selectors.EVENT_READ:
            return
        for _ in range(READ_BATCH):
            try:
                packet, fd = frames.receive_packet(worker.sock)
            except BlockingIOError:
                return
            except OSError:
                packet, fd = b"", None
            if not packet:  # the worker is gone; CHLD will reap it
                if fd is not None:
                    os.close(fd)
                self._unwatch_worker(worker)
                return
            try:
                message = worker.reassembler.feed(packet)
                if message is not None and message[0] is Kind.HANDBACK:
                    self._hand_back(worker, message[1], fd)
                    fd = None
                elif message is not None:
                    self._on_message(worker, *message)
            except frames.ProtocolError as exc:
                self._reject(worker, f"protocol violation: {exc}")
                return
            except Exception:  # noqa: BLE001 - a worker's message must never end the master
                log.exception("%s: its message could not be handled", worker)
                self._reject(worker, "its message could not be handled (traceback above)")
                return
            finally:
                if fd is not None:
                    os.close(fd)

    def _on_message(self, worker: Worker, kind: Kind, payload: bytes) -> None:
        value = frames.parse_from_worker(kind, payload)
        worker.last_seen = time.monotonic()
        if kind is Kind.PUBLISH:
            self._relay(worker, value)  # type: ignore[arg-type]
        elif kind is Kind.PUBLISH_TO:
            self._relay_to(worker, *value)  # type: ignore[misc]
        elif kind is Kind.HEARTBEAT:
            self._heartbeat(worker, value)  # type: ignore[arg-type]
        elif kind is Kind.READY:
            self._worker_ready(worker)
        elif kind is Kind.BOOT_FAILED:
            worker.boot_error = value  # type: ignore[assignment]

    def _reject(self, worker: Worker, why: str) -> None:
        """Stop reading ``worker`` and kill it: what it sends cannot be trusted any more."""
        self._unwatch_worker(worker)
        self._kill(worker, why)

    def _hand_back(self, worker: Worker, payload: bytes, fd: int | None) -> None:
        """A connection ``worker`` read another worker's request on: pass it to the owner."""
        if fd is None:
            raise frames.ProtocolError("HANDBACK without a client socket")
        address, data = frames.parse_from_worker(Kind.HANDBACK, payload)  # type: ignore[misc]
        worker.last_seen = time.monotonic()
        self._dispatcher.hand_back(worker, fd, address, data)

    def _heartbeat(self, worker: Worker, beat: frames.Heartbeat) -> None:
        """Take a worker's load; say when it becomes full (placement skips it) or has room."""
        worker.sessions, worker.connections = beat.sessions, beat.connections
        worker.placed = 0
        if worker.late:
            worker.late = False
            log.info("%s heartbeats again: new clients may go to it", worker)
        full = worker.connections >= self.settings.worker_connections
        if full != worker.full:
            worker.full = full
            if full:
                log.warning("%s is full: %d connections (--worker-connections %d); new clients "
                            "go to the other workers", worker, worker.connections,
                            self.settings.worker_connections)
            else:
                log.info("%s has room again (%d connections)", worker, worker.connections)

    def _relay(self, sender: Worker, payload: bytes | memoryview) -> None:
        """Hand a pub/sub message from ``sender`` to every other worker."""
        self.relay_broadcasts += 1
        self.relay_bytes += len(payload)
        self.relay_dropped += self._supervisor.send_to_all(Kind.DELIVER, payload, skip=sender)
        for other in self._supervisor.by_pid.values():
            if other.outbox:
                self._watch_worker(other)

    def _relay_to(self, sender: Worker, tag: int, payload: memoryview) -> None:
        """Hand a pub/sub message to the worker tagged ``tag`` only (it owns the sid).

        When no such worker serves (it exited, or the address was a room whose name
        merely looks like a sid), everyone gets it, as for a broadcast.
        """
        target = self._supervisor.by_tag.get(tag)
        if target is None or target is sender or target.state is State.BOOTING:
            self._relay(sender, payload)
            return
        self.relay_unicasts += 1
        self.relay_bytes += len(payload)
        if not self._supervisor.send_to(target, Kind.DELIVER, payload):
            self.relay_dropped += 1
        elif target.outbox:
            self._watch_worker(target)

    def _worker_ready(self, worker: Worker) -> None:
        if worker.state is not State.BOOTING:
            return
        log.info("%s ready after %.1f s", worker, time.monotonic() - worker.born)
        self._boot_failures = 0
        self._changed()
        rolled = self._rolling is worker
        if rolled:
            self._rolling = None
        if self._stopping or worker.slot >= self._size:
            self._drain(worker, "not needed any more")
            return
        previous = self._supervisor.serving.get(worker.slot)
        worker.state = State.SERVING
        self._supervisor.serving[worker.slot] = worker
        if previous is not None:
            self._drain(previous, f"replaced by worker {worker.pid}")
        if rolled and not self._roll:
            log.info("rolling restart done")
            self._rolls["finished"] = self._rolls["started"]
            self._notifier.ready(self._status_line())
        self._update_accepting()
        self._dispatcher.release()
        if not self._announced_ready and len(self._supervisor.serving) == self._size:
            self._announced_ready = True
            log.info("cluster ready: %d workers serving on %s", self._size,
                     ", ".join(str(b) for _sock, b in self._listeners))
            self._notifier.ready(self._status_line())

    def _worker_exited(self, worker: Worker, status: int) -> None:
        if not worker.killed:
            self._on_worker_event(worker, worker.sock, selectors.EVENT_READ)  # its last words
        was = worker.state
        self._unwatch_worker(worker)
        stranded = self._supervisor.forget(worker)
        self._changed()
        lived = time.monotonic() - worker.born
        how = describe_exit(status)
        if was is State.DRAINING and os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
            log.info("%s drained and exited (lived %.1f s)", worker, lived)
        else:
            level = logging.INFO if self._stopping or was is State.DRAINING else logging.WARNING
            log.log(level, "%s died (%s) while %s (lived %.1f s)%s", worker, how, was.value, lived,
                    f": {worker.boot_error}" if worker.boot_error else "")
        self._update_accepting()
        for packet, fd in stranded:  # queued for the dead worker: route them again
            self._dispatcher.redeliver(packet, fd)
        if self._stopping:
            return
        if was is not State.DRAINING:
            self._count_restart(worker.slot, "timeout" if worker.killed else "crash")
        if self._rolling is worker:
            self._rolling = None
            self._roll.clear()
            log.error("rolling restart aborted: the new %s failed to boot (%s); the old workers "
                      "keep serving", worker, worker.boot_error or how)
            self._rolls["finished"] = self._rolls["started"]
            self._rolls["failure"] = (self._rolls["started"],
                                      f"the new {worker} failed to boot ({worker.boot_error or how})")
            self._notifier.ready(self._status_line())
        elif was is State.BOOTING:
            self._boot_failures += 1
            if self._boot_failures >= BOOT_FAILURE_LIMIT:
                self._halt(f"workers fail to boot ({self._boot_failures} in a row): "
                           f"{worker.boot_error or how}")
                return
        if self._slot_is_empty(worker.slot) and worker.slot not in self._respawn_at:
            self._schedule_respawn(worker.slot, lived)

    def _count_restart(self, slot: int, reason: str) -> None:
        self.restarts[reason] += 1
        self._slot_restarts[slot] += 1

    def _schedule_respawn(self, slot: int, lived: float) -> None:
        """Respawn ``slot`` at once, or after a backoff that doubles while it keeps dying."""
        streak = self._crash_streak[slot] = (
            0 if lived > STABLE_LIFE else self._crash_streak[slot] + 1)
        delay = 0.0 if streak == 0 else min(0.1 * 2 ** streak, 30.0)
        why = f"respawn after {delay:.1f} s backoff" if delay else "respawn"
        self._respawn_at[slot] = (time.monotonic() + delay, why)
        if delay:
            log.warning("slot %d respawns in %.1f s (crash %d in a row)", slot, delay, streak)

    def _drain(self, worker: Worker, why: str) -> None:
        """Route no new client to ``worker``; it ends its sessions, then exits."""
        if worker.state is State.DRAINING:
            return
        if self._supervisor.serving.get(worker.slot) is worker:
            del self._supervisor.serving[worker.slot]
        worker.state = State.DRAINING
        self._update_accepting()
        worker.drain_deadline = time.monotonic() + self.settings.graceful_timeout + DRAIN_GRACE
        for packet in frames.packets(Kind.DRAIN):
            worker.send(packet)
        self._watch_worker(worker)
        self._changed()
        log.info("%s draining (%s; %d sessions)", worker, why, worker.sessions)

    def _check_heartbeats(self, now: float) -> None:
        boot_limit = max(self.settings.timeout, BOOT_TIMEOUT)
        for worker in list(self._supervisor.by_pid.values()):
            if worker.killed:
                continue
            silent = now - worker.last_seen
            if worker.drain_deadline is not None and now >= worker.drain_deadline:
                self._kill(worker, "still draining after the graceful timeout")
            elif worker.state is State.BOOTING and silent > boot_limit:
                self._kill(worker, f"not ready after {silent:.0f} s")
            elif worker.state is not State.BOOTING and silent > self.settings.timeout:
                self._kill(worker, f"no heartbeat for {silent:.1f} s (--timeout "
                                   f"{self.settings.timeout:g})")
            elif (worker.state is State.SERVING and not worker.late
                  and silent > LATE_BEATS * self.settings.heartbeat_interval):
                worker.late = True
                log.warning("%s missed its heartbeats for %.1f s: new clients go to the other "
                            "workers until it answers", worker, silent)

    def _kill(self, worker: Worker, why: str) -> None:
        """SIGKILL ``worker`` (once), saying why; CHLD then reaps and replaces it."""
        if worker.killed:
            return
        log.warning("%s killed with SIGKILL: %s", worker, why)
        worker.killed = True
        try:
            os.kill(worker.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def _scale_to(self, size: int) -> None:
        if self._stopping:
            return
        size = max(1, size)
        if size == self._size:
            log.info("already %d workers: nothing to scale", size)
            return
        log.info("scaling from %d to %d workers", self._size, size)
        old, self._size = self._size, size
        self._changed()
        for slot in range(old, size):
            self.restarts["scale"] += 1
            self._spawn(slot, "scaling up")
        for slot in range(size, old):
            self._respawn_at.pop(slot, None)
            for worker in self._supervisor.in_slot(slot):
                self._drain(worker, "scaling down")
        self._roll = collections.deque(s for s in self._roll if s < size)

    def _step_roll(self) -> None:
        """Start the next slot of a rolling restart once the previous one is switched.

        A slot whose worker is still booting (started, or respawned, before the HUP)
        waits for it, then is rolled like the others.
        """
        while self._rolling is None and self._roll:
            slot = self._roll[0]
            if slot >= self._size:
                self._roll.popleft()
                continue
            if any(w.state is State.BOOTING for w in self._supervisor.in_slot(slot)):
                return
            self._roll.popleft()
            self._count_restart(slot, "hup")
            self._rolling = self._spawn(slot, "rolling restart")
        if self._rolling is None and self._rolls["finished"] < self._rolls["started"]:
            self._rolls["finished"] = self._rolls["started"]  # ended by a scale down
            self._notifier.ready(self._status_line())

    def _begin_stop(self, how: str) -> None:
        if self._stopping == "fast" or (self._stopping and how == "graceful"):
            return
        self._stopping = how
        self._notifier.stopping()
        self._changed()
        self._roll.clear()
        self._respawn_at.clear()
        self._close_listeners()
        if how == "fast":
            log.info("fast stop: stopping %d workers", len(self._supervisor.by_pid))
            self._supervisor.signal_all(signal.SIGTERM)
            self._stop_deadline = time.monotonic() + FAST_STOP_TIMEOUT
        else:
            log.info("graceful stop: draining %d workers", len(self._supervisor.by_pid))
            for worker in list(self._supervisor.by_pid.values()):
                self._drain(worker, "graceful stop")
            self._stop_deadline = time.monotonic() + self.settings.graceful_timeout + DRAIN_GRACE

    def _halt(self, reason: str) -> None:
        log.error(reason)
        self._halt_reason = reason
        self._begin_stop("fast")

    # --------------------------------------------------------- selector plumbing

    def _watch_worker(self, worker: Worker) -> None:
        assert self._selector is not None
        events = selectors.EVENT_READ | (
            selectors.EVENT_WRITE if worker.outbox and not worker.broken else 0)
        try:
            key = self._selector.get_key(worker.sock)
        except KeyError:
            self._selector.register(worker.sock, events,
                                    functools.partial(self._on_worker_event, worker))
            return
        except ValueError:  # the socket is closed
            return
        if key.events != events:
            self._selector.modify(worker.sock, events, key.data)

    def _unwatch_worker(self, worker: Worker) -> None:
        assert self._selector is not None
        try:
            self._selector.unregister(worker.sock)
        except (KeyError, ValueError):
            pass

    def _on_listener_readable(self, sock: object, mask: int) -> None:
        accepted = self._dispatcher.accepted
        if not self._dispatcher.accept_from(sock):  # type: ignore[arg-type]
            log.warning("out of file descriptors: not accepting for %.1f s", ACCEPT_PAUSE)
            self._pause_accepting(ACCEPT_PAUSE)
        elif 0 < self._dispatcher.accepted - accepted < ACCEPT_BATCH:  # a full batch: more wait
            self._pause_accepting(ACCEPT_LINGER)

    def _pause_accepting(self, seconds: float) -> None:
        """Leave new clients in the listen backlog for ``seconds``; the loop serves the rest
        meanwhile, and its tick takes the listeners back."""
        self._accept_paused_until = max(self._accept_paused_until, time.monotonic() + seconds)
        self._update_accepting()

    def _update_accepting(self) -> None:
        """Accept while a worker serves and files are not short; else leave the clients
        in the listen backlog (a connection accepted with no worker to take it would
        have to be held or dropped)."""
        assert self._selector is not None
        on = bool(self._listeners and self._supervisor.serving) and not self._accept_paused_until
        if on == self._accepting:
            return
        self._accepting = on
        for sock, _bind in self._listeners:
            if on:
                self._selector.register(sock, selectors.EVENT_READ, self._on_listener_readable)
            else:
                self._selector.unregister(sock)

    def _on_wake(self, _fd: object, _mask: int) -> None:
        try:
            while os.read(self._wake_read, 4096):
                pass
        except BlockingIOError:
            pass

    def _post(self, command: Callable[[], None]) -> None:
        self._commands.append(command)
        try:
            os.write(self._wake_write, b"\0")
        except BlockingIOError:
            pass

    # ------------------------------------------------------------- start / stop

    def _preflight(self) -> None:
        settings = self.settings
        for name, path in own.shadows([os.getcwd(), *sys.path]):
            log.warning("%s is named like sticky-cluster's own package %r: the cluster runs its "
                        "own, and the app gets ours if it imports %r; rename it", path, name, name)
        if isinstance(settings.target, str):
            try:
                check = subprocess.run(
                    [sys.executable, "-c", own.CHECK_BOOTSTRAP, own.ROOT, settings.runtime,
                     settings.target],
                    capture_output=True, text=True,
                    **(self._identity.popen_args() if self._identity else {}))
            except OSError as exc:  # e.g. --user may not read this Python
                raise ClusterError(f"cannot load the app to check it: {exc.strerror}: "
                                   f"{exc.filename}") from None
            if check.returncode != 0:
                lines = check.stderr.strip().splitlines() or ["the app could not be loaded"]
                raise ClusterError(lines[-1])
            self._supervisor.runtime = _named_runtime(check.stdout)
        else:
            self._supervisor.runtime = _runtime_of(settings.target, settings.runtime)
        if settings.adapter:
            error = check_broker(settings.adapter, settings.channel)
            if error:
                raise ClusterError(error)
        raise_open_files_limit()

    def _open_listeners(self) -> None:
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._wake_read, selectors.EVENT_READ, self._on_wake)
        self._dispatcher.attach(self._selector)
        try:
            inherited = inherited_listeners()
            self._inherited = {sock for sock, _bind in inherited}
            for sock, bind in inherited or [(listeners.open_listener(b), b)
                                            for b in self.settings.binds]:
                self._dispatcher.prepare(sock)
                self._listeners.append((sock, bind))
        except ConfigError as exc:
            raise ClusterError(str(exc)) from None
        for sock, bind in self._listeners:
            log.info("listening at %s (master %d)%s", bind, os.getpid(),
                     ", inherited from systemd" if sock in self._inherited else "")

    def _open_extras(self) -> None:
        """Start the status server and the control socket, when enabled (on the loop)."""
        assert self._selector is not None
        settings = self.settings
        try:
            if settings.status_bind is not None:
                from .status_http import StatusServer
                from .status_site import site

                self._extras.append(StatusServer(settings.status_bind, site(self.facts)))
                self._extras[-1].open(self._selector)
                log.info("status at http://%s/ (/metrics, /healthz, /status)",
                         settings.status_bind)
            if settings.control_path is not None:
                from .control_socket import ControlServer

                self._extras.append(ControlServer(settings.control_path, self))
                self._extras[-1].open(self._selector)
        except ConfigError as exc:
            self._extras.pop()
            raise ClusterError(str(exc)) from None

    def _target_name(self) -> str:
        target = self.settings.target
        return target if isinstance(target, str) else type(target).__name__

    def _close_listeners(self) -> None:
        for sock, bind in self._listeners:
            if self._selector is not None:
                try:
                    self._selector.unregister(sock)
                except (KeyError, ValueError):
                    pass
            if sock in self._inherited:
                sock.close()  # systemd's socket: its file stays for the next master
            else:
                listeners.close_listener(sock, bind)
        self._listeners = []
        self._accepting = False

    def _install_signals(self) -> None:
        signal.set_wakeup_fd(self._wake_write, warn_on_full_buffer=False)
        for name in HANDLED_SIGNALS:
            signal.signal(getattr(signal, f"SIG{name}"), self._on_signal)

    def _restore_signals(self) -> None:
        signal.set_wakeup_fd(-1)
        for name in HANDLED_SIGNALS:
            signal.signal(getattr(signal, f"SIG{name}"), signal.SIG_DFL)
        if self._selector is not None:
            self._selector.close()

    def _on_signal(self, signum: int, _frame: object) -> None:
        if not self._started and signum in STOP_SIGNALS:
            raise _StoppedEarly(signal.Signals(signum).name)
        if not self._started and signum == signal.SIGHUP:
            self._early_hup = True  # no worker yet: the ones to come load the code as it is now
            return
        self._commands.append(signum)

    def _forget_in_child(self) -> None:
        for sock, _bind in self._listeners:
            sock.close()
        self._listeners = []
        self._dispatcher.close()
        for extra in self._extras:
            extra.forget_in_child()
        self._notifier.close()
        self._events.detach()
        if self._selector is not None:
            self._selector.close()
        self._supervisor.close_all_in_child()
        if self._pid_file is not None:
            self._pid_file.close_in_child()
        os.close(self._wake_read)
        os.close(self._wake_write)


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
