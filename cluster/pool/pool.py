"""The worker pool: the one owner of the master's table of workers and of their states.

Every transition of a worker happens here, and only here: forked (BOOTING), ready
(SERVING, its slot switched to it), drained (DRAINING: no new clients, its sessions go
on), killed, exited; and the pool's own bookkeeping around them: the respawn backoff of
a slot that keeps crashing, how many workers boot at once (a few per CPU: the others
wait for their turn), the boot-failure limit that halts the master, heartbeats (late,
then killed), the boot timeout, the rolling restart slot by slot (the new worker is
ready before the old one drains) and the size. The pool also owns the channels' write interest:
a :class:`~cluster.pool.worker.Worker` tells the pool when its outbox fills or empties, and
the pool asks its watcher (the master's selector) to wake it accordingly.

As gunicorn's arbiter (``manage_workers``, ``murder_workers``), the pool reconciles
rather than chases events: :meth:`WorkerPool.reconcile` compares the slots that should
run with the workers that do and starts or retires the difference;
:meth:`WorkerPool.check_heartbeats` kills the workers past their timeout. A missed
event cannot leave the pool wrong for long.

What it must never do: block, sleep, or call the system directly. Its side effects go
through injected parts (a clock, a process starter, a killer, a watcher) and what the
master must hear goes through :class:`PoolHooks`, so that the state machine runs in
tests with a fake clock and fake processes. Whether to roll, scale or stop is the
master's policy; how is the pool's.
"""
from __future__ import annotations

import collections
import functools
import logging
import os
import selectors
import signal
import time
from typing import Callable, Collection

from cluster.protocol import frames
from cluster.protocol.frames import Kind
from cluster.protocol.sids import TAG_LIMIT
from cluster.setup.config import Settings

from . import recycle
from .backoff import RespawnBackoff
from .pool_wiring import PoolHooks, ProcessStarter, Watcher
from .roll import RollingRestart
from .supervisor import describe_exit, send_signal
from .worker import State, Worker

log = logging.getLogger("sticky_cluster.master")

DRAIN_GRACE = 5.0
"""Seconds past its drain (``graceful_timeout`` + ``drain_spread``) a draining worker gets
before SIGKILL."""
BOOT_FAILURE_LIMIT = 3
"""Workers in a row that fail to boot by the app's fault (:func:`failed_to_boot`) make the
master give up, when no worker serves; while some do, they go on serving."""
BOOTS_PER_CPU = 2
"""Workers that boot at once, per CPU: importing an app is CPU-bound, and hundreds at
once would starve the master and each other (none ready for minutes)."""
WORKERS_PER_CPU = 4
"""More workers than this per CPU earn a warning: they compete for the CPU."""
LATE_BEATS = 2.5
"""Heartbeat intervals of silence after which a worker is late: new clients go elsewhere."""
SATURATED_GRACE = 3.0
"""While two or more serving workers are late at once (the host's CPU, not one worker, is
the trouble), a silent worker is killed after this many times ``--timeout`` instead of one:
killing it would only move its clients onto the others, which are behind already."""
SATURATED_SAY_EVERY = 60.0
"""Seconds between two warnings that the host's CPU is saturated."""
RECYCLE_CHECK = 1.0
"""Seconds between two looks at the workers' memory and age (``--max-worker-*``)."""
RECYCLE_RETRY = 30.0
"""Seconds before recycling is tried again after a replacement failed to boot."""
RESTART_REASONS = ("crash", "timeout", "hup", "scale", "memory", "age")
"""Why workers are replaced (:attr:`WorkerPool.restarts`), as ``/metrics`` lists them."""
READ_BATCH = 256
"""Packets read from one worker per wake-up, so that a chatty worker cannot hold the loop."""
SETTLED_RECHECK = 0.1
"""Seconds between two reconciles of a table that has not changed (one after each change,
and on every turn while a start is due): a change nobody noted is still caught this soon."""


def boot_concurrency(cpus: int) -> int:
    """How many workers boot at once on ``cpus`` CPUs (:data:`BOOTS_PER_CPU` each, 2 at least)."""
    return max(2, BOOTS_PER_CPU * cpus)


def oversubscribed(workers: int, cpus: int) -> str | None:
    """The warning for ``workers`` workers on ``cpus`` CPUs, when they are far too many."""
    if workers <= WORKERS_PER_CPU * cpus:
        return None
    return (f"{workers} workers on {cpus} CPUs: more than {WORKERS_PER_CPU} per CPU compete "
            f"for the CPU and memory (each is a process with its own event loop; one or two "
            f"per CPU serve best); they boot {boot_concurrency(cpus)} at a time")


def failed_to_boot(worker: Worker, status: int) -> bool:
    """Whether ``worker``, which died while booting with wait ``status``, failed by the
    app's fault: it said why (its import error), exited by itself, or did not get ready
    within ``--boot-timeout``. A worker killed by a signal from outside (SIGKILL by an
    operator or the OOM killer) did not: it is respawned, and never halts the master."""
    return worker.boot_error is not None or os.WIFEXITED(status)


def drain_limit(settings: Settings) -> float:
    """Seconds a drain may take before its worker is killed: the graceful timeout, the
    spread of the closes after it, and :data:`DRAIN_GRACE`."""
    return settings.graceful_timeout + settings.drain_spread + DRAIN_GRACE


class WorkerPool:
    """The workers of the cluster, slot by slot.

    :param settings: ``timeout``, ``boot_timeout``, ``heartbeat_interval``,
                     ``graceful_timeout`` and ``worker_connections`` are used.
    :param starter: starts and reaps the worker processes.
    :param hooks: what the master is told.
    :param cpus: the CPUs the workers run on (how many boot at once, when to warn).
    :param kill: sends a signal to a pid (``os.kill``, quiet when it is gone).
    :param clock: monotonic seconds.
    """

    def __init__(self, settings: Settings, starter: ProcessStarter, hooks: PoolHooks,
                 cpus: int, kill: Callable[[int, int], None] = send_signal,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._settings = settings
        self._starter = starter
        self._hooks = hooks
        self._cpus = cpus
        self.max_booting = boot_concurrency(cpus)
        """Workers that boot at once at most; the other starts wait for their turn."""
        self._kill_process = kill
        self._clock = clock
        self._watcher: Watcher | None = None
        self._next_tag = 1
        self.size = settings.workers
        """The number of slots that should run a worker."""
        self.stopping = False
        """The master stops: no respawn, no roll; a worker that becomes ready drains."""
        self.by_pid: dict[int, Worker] = {}
        """Every live worker (read it; the pool alone writes it)."""
        self.by_tag: dict[int, Worker] = {}
        self.serving: dict[int, Worker] = {}
        self._saturated_said = 0.0
        """When the saturation may be said in the log again (monotonic seconds)."""
        """slot -> the worker new clients of that slot go to."""
        self._due: dict[int, tuple[float, str, bool]] = {}
        """slot -> (when, why, warm) of a start waiting for its time (a respawn's backoff);
        ``warm``: the starter may fork it from the workers' template (not a respawn)."""
        self._backoff = RespawnBackoff()
        self._boot_failures = 0
        self._roll = RollingRestart()
        self._roll_after_drained = settings.roll_after == "drained"
        self.restarts: collections.Counter[str] = collections.Counter()
        """Workers replaced, by reason: crash, timeout (killed), hup, scale, memory, age."""
        self.slot_restarts: collections.Counter[int] = collections.Counter()
        """Workers replaced, by slot."""
        self.rolls = self._roll.counts
        """Rolling restarts started and finished; the last failure: (roll number, why)."""
        self._recycle = recycle.RecyclePolicy(
            settings.max_worker_memory, settings.max_worker_memory_jitter,
            settings.max_worker_age, settings.max_worker_age_jitter)
        """When a worker is recycled (``max_worker_memory``, ``max_worker_age``, jitters)."""
        self._recycling: Worker | None = None
        """The new worker booting to replace one past its memory or age limit."""
        self._recycle_due = 0.0
        self._settled = False
        """Nothing for :meth:`reconcile` to do until the table changes or a start is due."""
        self._recheck_due = 0.0

    # ------------------------------------------------------------------- reading

    @property
    def rolling(self) -> bool:
        """Whether a rolling restart is under way."""
        return self._roll.under_way

    def slots_to_roll(self) -> Collection[int]:
        """The slots whose serving worker the rolling restart under way will still drain."""
        return self._roll.slots_left()

    def owner(self, tag: int) -> Worker | None:
        """The live worker tagged ``tag`` past booting (its sessions' owner), if any."""
        worker = self.by_tag.get(tag)
        return worker if worker is not None and worker.state is not State.BOOTING else None

    def in_slot(self, slot: int) -> list[Worker]:
        """Every live worker of ``slot``, whatever its state."""
        return [worker for worker in self.by_pid.values() if worker.slot == slot]

    # ---------------------------------------------------------- the master's policy

    def attach(self, watcher: Watcher) -> None:
        """Have ``watcher`` (the master's loop) wake the pool for the channels."""
        self._watcher = watcher

    def start(self) -> None:
        """Start a worker in every slot, :attr:`max_booting` at a time (the others as the
        first get ready)."""
        self._warn_if_oversubscribed()
        now = self._clock()
        for slot in range(self.size):
            self._due[slot] = (now, "start", True)
        self.reconcile(now)

    def roll(self) -> None:
        """Rolling restart, slot by slot: the new worker ready, then the old one drains.

        A roll during a roll starts it over, so that every slot ends up on a worker
        started after the last call.
        """
        pace = (f", one at a time: each next once the old one has drained, up to "
                f"{drain_limit(self._settings):g} s each (--roll-after drained)"
                if self._roll_after_drained else "")
        log.info("rolling restart of %d workers%s%s", self.size,
                 " (started over)" if self.rolling else "", pace)
        self._roll.begin(self.size)
        self._changed()
        self._step_roll()

    def resize(self, size: int) -> None:
        """Run ``size`` workers (at least 1) from now on: start or retire the difference."""
        size = max(1, size)
        if size == self.size:
            log.info("already %d workers: nothing to scale", size)
            return
        log.info("scaling from %d to %d workers", self.size, size)
        old, self.size = self.size, size
        self._warn_if_oversubscribed()
        self._changed()
        now = self._clock()
        for slot in range(old, size):
            self.restarts["scale"] += 1
            self._due[slot] = (now, "scaling up", True)
        self._roll.trim(size)
        self.reconcile(now)

    def stop(self, graceful: bool) -> None:
        """Stop every worker: drain them (``graceful``) or SIGTERM them; start no more."""
        self.stopping = True
        self._roll.cancel()
        self._due.clear()
        if graceful:
            log.info("graceful stop: draining %d workers", len(self.by_pid))
            for worker in list(self.by_pid.values()):
                self._drain(worker, "graceful stop")
        else:
            log.info("fast stop: stopping %d workers", len(self.by_pid))
            self.signal_all(signal.SIGTERM)

    def signal_all(self, signum: int) -> None:
        """Send ``signum`` to every live worker."""
        for pid in list(self.by_pid):
            self._kill_process(pid, signum)

    def kill_all(self, why: str) -> None:
        """SIGKILL every live worker, saying why."""
        for worker in list(self.by_pid.values()):
            self._kill(worker, why)

    # ------------------------------------------------------------------ reconcile

    def reconcile(self, now: float) -> None:
        """Start what is missing (respawns past their backoff), :attr:`max_booting` at a
        time, retire what is too much, and move the rolling restart on. Nothing while
        stopping."""
        if self.stopping or (self._settled and not self._due and now < self._recheck_due):
            return  # the loop calls this every turn: one per accept batch under load
        self._recheck_due = now + SETTLED_RECHECK
        for worker in list(self.by_pid.values()):
            if worker.slot >= self.size:
                self._drain(worker, "scaling down")
        occupied, booting = self._census()
        room = self.max_booting - booting
        for slot, (when, why, warm) in sorted(self._due.items()):
            if slot >= self.size or slot in occupied:
                del self._due[slot]
            elif now >= when and room > 0:
                del self._due[slot]
                self._spawn(slot, why, warm)
                occupied.add(slot)
                room -= 1
        if room > 0 and len(occupied) + len(self._due) < self.size:
            for slot in range(self.size):
                if slot not in occupied and slot not in self._due:
                    self._spawn(slot, "missing")
                    room -= 1
                    if room == 0:
                        break
        self._step_roll()
        self._settled = not self._roll.under_way

    def check_heartbeats(self, now: float) -> None:
        """Kill the workers past their deadline or heartbeat timeout; mark the late ones."""
        settings = self._settings
        saturated = self._saturated(now)
        for worker in list(self.by_pid.values()):
            if worker.killed:
                continue
            silent = now - worker.last_seen
            if worker.drain_deadline is not None and now >= worker.drain_deadline:
                self._kill(worker, "still draining after the graceful timeout")
            elif worker.state is State.BOOTING and now - worker.born > settings.boot_timeout:
                worker.boot_error = (f"not ready within {settings.boot_timeout:g} s "
                                     "(--boot-timeout)")
                self._kill(worker, worker.boot_error)
            elif worker.state is not State.BOOTING and silent > settings.timeout:
                if saturated and silent <= SATURATED_GRACE * settings.timeout:
                    worker.late = True  # passed over for new clients meanwhile
                    continue
                self._kill(worker, f"no heartbeat for {silent:.1f} s (--timeout "
                                   f"{settings.timeout:g})")
            elif (worker.state is State.SERVING and not worker.late
                  and silent > LATE_BEATS * settings.heartbeat_interval):
                worker.late = True
                log.warning("%s missed its heartbeats for %.1f s: new clients go to the other "
                            "workers until it answers", worker, silent)

    def _saturated(self, now: float) -> bool:
        """Whether two or more running workers, serving or draining, are late at once: the
        host's CPU is saturated (a hung worker is late alone). A draining worker counts: in a
        rolling restart at scale the old workers, closing their sessions, fall behind first,
        and one killed for it drops every session it has left at once. Said in the log once
        per :data:`SATURATED_SAY_EVERY` seconds at most."""
        after = LATE_BEATS * self._settings.heartbeat_interval
        running = [worker for worker in self.by_pid.values()
                   if worker.state is not State.BOOTING and not worker.killed]
        late = sum(1 for worker in running if now - worker.last_seen > after)
        saturated = late >= 2
        if saturated and now >= self._saturated_said:
            self._saturated_said = now + SATURATED_SAY_EVERY
            log.warning("%d of %d workers are late at once: the host's CPU is saturated; a "
                        "silent worker is killed after %g s instead of --timeout %g s",
                        late, len(running), SATURATED_GRACE * self._settings.timeout,
                        self._settings.timeout)
        return saturated

    def check_recycling(self, now: float) -> None:
        """Recycle a serving worker past its memory or age limit (:mod:`cluster.pool.recycle`)
        through the rolling drain: its replacement starts now, and once it is ready the
        slot switches to it and the old one drains. One slot at a time, none during a
        rolling restart (it replaces every worker anyway), none while :attr:`max_booting`
        workers boot, and none while stopping."""
        if (not self._recycle.enabled or now < self._recycle_due or self.stopping
                or self.rolling or self._recycling is not None
                or self._census()[1] >= self.max_booting):
            return
        self._recycle_due = now + RECYCLE_CHECK
        for slot, worker in sorted(self.serving.items()):
            memory = self._starter.memory(worker.pid) if worker.limits.memory else None
            why = recycle.reason(worker.limits, now - worker.born, memory)
            if why is not None and not self._booting(slot):
                self._count_restart(slot, why)
                self._recycling = self._spawn(slot, f"recycling {worker}: " + recycle.describe(
                    why, worker.limits, now - worker.born, memory))
                return

    def reap(self) -> list[tuple[int, int]]:
        """Take note of the workers that exited; replace them (after a backoff). Returns
        the other children that exited, (pid, wait status): not workers (the forwarder)."""
        others = []
        for pid, status in self._starter.reap():
            worker = self.by_pid.get(pid)
            if worker is not None:
                self._exited(worker, status)
            else:
                others.append((pid, status))
        return others

    def close_all_in_child(self) -> None:
        """In a new child: close the master's ends of every worker's channel."""
        for worker in self.by_pid.values():
            for _packet, client in worker.discard_outbox():
                os.close(client)
            worker.sock.close()

    # -------------------------------------------------------------- transitions

    def _spawn(self, slot: int, why: str, warm: bool = True) -> Worker:
        tag = self._next_tag
        self._next_tag = self._next_tag % (TAG_LIMIT - 1) + 1
        pid, sock = self._starter.start(slot, tag, warm)
        now = self._clock()
        worker = Worker(pid=pid, slot=slot, tag=tag, sock=sock, born=now, last_seen=now,
                        limits=self._recycle.draw())
        self._enlist(worker)
        log.info("%s booting (%s)", worker, why)
        self._changed()
        return worker

    def _enlist(self, worker: Worker) -> None:
        """Put ``worker`` in the table and watch its channel."""
        self.by_pid[worker.pid] = worker
        self.by_tag[worker.tag] = worker
        worker.on_backlog = self._watch
        self._watch(worker)

    def _ready(self, worker: Worker) -> None:
        if worker.state is not State.BOOTING:
            return
        log.info("%s ready after %.1f s", worker, self._clock() - worker.born)
        self._boot_failures = 0
        self._changed()
        rolled = self._roll.let_go(worker)
        if self._recycling is worker:
            self._recycling = None
        if self.stopping or worker.slot >= self.size:
            self._drain(worker, "not needed any more")
            return
        previous = self.serving.get(worker.slot)
        worker.state = State.SERVING
        self.serving[worker.slot] = worker
        if previous is not None:
            self._drain(previous, f"replaced by worker {worker.pid}")
        if rolled and self._roll.finish():
            log.info("rolling restart done")
            self._hooks.roll_ended()
        self._hooks.serving_changed()

    def _drain(self, worker: Worker, why: str) -> None:
        """Route no new client to ``worker``; it ends its sessions, then exits."""
        if worker.state is State.DRAINING:
            return
        self._roll.let_go(worker)  # scaled away while it booted for a roll: the roll goes on
        if self._recycling is worker:  # scaled away while it booted to recycle its slot
            self._recycling = None
        was_serving = self.serving.get(worker.slot) is worker
        if was_serving:
            del self.serving[worker.slot]
        worker.state = State.DRAINING
        worker.drain_deadline = self._clock() + drain_limit(self._settings)
        for packet in frames.packets(Kind.DRAIN):
            worker.send(packet)
        self._changed()
        log.info("%s draining (%s; %d sessions)", worker, why, worker.sessions)
        if was_serving:
            self._hooks.serving_changed()

    def _kill(self, worker: Worker, why: str) -> None:
        """SIGKILL ``worker`` (once), saying why; its exit is reaped as any other."""
        if worker.killed:
            return
        log.warning("%s killed with SIGKILL: %s", worker, why)
        worker.killed = True
        self._kill_process(worker.pid, signal.SIGKILL)

    def _reject(self, worker: Worker, why: str) -> None:
        """Stop reading ``worker`` and kill it: what it sends cannot be trusted any more."""
        self._unwatch(worker)
        self._kill(worker, why)

    def _exited(self, worker: Worker, status: int) -> None:
        if not worker.killed:
            self._on_channel(worker, worker.sock, selectors.EVENT_READ)  # its last words
        was = worker.state
        self._unwatch(worker)
        stranded = self._forget(worker)
        self._changed()
        lived = self._clock() - worker.born
        how = describe_exit(status)
        if was is State.DRAINING and os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
            log.info("%s drained and exited (lived %.1f s)", worker, lived)
        elif self.stopping and how in ("signal SIGTERM", "exit code 0"):  # the stop we asked for
            log.info("%s stopped (lived %.1f s)", worker, lived)
        else:  # one killed said why already
            level = (logging.INFO if self.stopping or was is State.DRAINING or worker.killed
                     else logging.WARNING)
            log.log(level, "%s died (%s) while %s (lived %.1f s)%s", worker, how, was.value, lived,
                    f": {worker.boot_error}" if worker.boot_error else "")
        self._hooks.serving_changed()
        for packet, fd in stranded:  # queued for the dead worker: route them again
            self._hooks.stranded(packet, fd)
        if self.stopping:
            return
        if was is not State.DRAINING:
            self._count_restart(worker.slot, "timeout" if worker.killed else "crash")
        if self._roll.worker is worker:
            why = f"the new {worker} failed to boot ({worker.boot_error or how})"
            log.error("rolling restart aborted: %s; the old workers keep serving", why)
            self._roll.fail(why)
            self._hooks.roll_ended()
        elif self._recycling is worker:
            self._recycling = None
            self._recycle_due = self._clock() + RECYCLE_RETRY
            log.error("recycling slot %d stopped: %s failed to boot (%s); the old worker keeps "
                      "serving, retried in %.0f s", worker.slot, worker,
                      worker.boot_error or how, RECYCLE_RETRY)
        elif was is State.BOOTING and failed_to_boot(worker, status):
            self._boot_failures += 1
            if self._boot_failures >= BOOT_FAILURE_LIMIT:
                why = (f"workers fail to boot ({self._boot_failures} in a row): "
                       f"{worker.boot_error or how}")
                if not self.serving:
                    self._hooks.halt(why)
                    return
                log.error("%s; the %d serving workers go on, slot %d is tried again",
                          why, len(self.serving), worker.slot)
        if self._slot_is_empty(worker.slot) and worker.slot not in self._due:
            self._schedule_respawn(worker.slot, lived)

    def _forget(self, worker: Worker) -> list[tuple[bytes, int]]:
        """Drop a dead worker from every table; return the hand-offs still queued for it."""
        self.by_pid.pop(worker.pid, None)
        if self.by_tag.get(worker.tag) is worker:
            del self.by_tag[worker.tag]
        if self.serving.get(worker.slot) is worker:
            del self.serving[worker.slot]
        clients = worker.discard_outbox()
        worker.sock.close()
        return clients

    def _count_restart(self, slot: int, reason: str) -> None:
        self.restarts[reason] += 1
        self.slot_restarts[slot] += 1

    def _schedule_respawn(self, slot: int, lived: float) -> None:
        """Respawn ``slot`` at once, or after a backoff that doubles while it keeps dying.

        Forked from the master, not the workers' template: the dead worker's clients
        reconnect at once, and the survivors serve them while the successor imports; one
        ready at once would be the emptiest worker and take the whole reconnect storm
        alone (docs/benchmarks.md, the kill storm)."""
        delay, streak = self._backoff.delay(slot, lived)
        why = f"respawn after {delay:.1f} s backoff" if delay else "respawn"
        self._due[slot] = (self._clock() + delay, why, False)
        if delay:
            log.warning("slot %d respawns in %.1f s (crash %d in a row)", slot, delay, streak)

    def _slot_is_empty(self, slot: int) -> bool:
        """True when ``slot`` is in use but no worker serves it nor boots for it."""
        return slot < self.size and not any(
            worker.state is not State.DRAINING for worker in self.in_slot(slot))

    def _step_roll(self) -> None:
        """Start the next slot of a rolling restart once the previous one is switched
        (and fewer than :attr:`max_booting` workers boot; with ``--roll-after drained``,
        once no worker drains either)."""
        if self._roll_after_drained and self._roll.under_way and any(
                worker.state is State.DRAINING for worker in self.by_pid.values()):
            return
        slot = (self._roll.next_slot(self.size, self._booting)
                if self._census()[1] < self.max_booting else None)
        if slot is not None:
            self._count_restart(slot, "hup")
            self._roll.worker = self._spawn(slot, "rolling restart")
        elif self._roll.finish():  # ended by a scale down
            self._hooks.roll_ended()

    def _changed(self) -> None:
        """The table changed (a worker came, went, or changed state; the size; a roll):
        reconcile looks again, and the status file is rewritten."""
        self._settled = False
        self._hooks.changed()

    def _booting(self, slot: int) -> bool:
        return any(worker.state is State.BOOTING for worker in self.in_slot(slot))

    def _census(self) -> tuple[set[int], int]:
        """(the slots with a worker that serves or boots, how many workers boot)."""
        occupied = set()
        booting = 0
        for worker in self.by_pid.values():
            if worker.state is not State.DRAINING:
                occupied.add(worker.slot)
                booting += worker.state is State.BOOTING
        return occupied, booting

    def _warn_if_oversubscribed(self) -> None:
        warning = oversubscribed(self.size, self._cpus)
        if warning:
            log.warning(warning)

    # ------------------------------------------------------------------ channels

    def _watch(self, worker: Worker) -> None:
        """Wake for ``worker``'s messages, and for room in its channel while it has a backlog."""
        if self._watcher is not None:
            events = selectors.EVENT_READ | (selectors.EVENT_WRITE if worker.wants_write else 0)
            self._watcher.watch(worker.sock, events, functools.partial(self._on_channel, worker))

    def _unwatch(self, worker: Worker) -> None:
        if self._watcher is not None:
            self._watcher.unwatch(worker.sock)

    def _on_channel(self, worker: Worker, _sock: object, mask: int) -> None:
        if mask & selectors.EVENT_WRITE:
            worker.flush()
        if not mask & selectors.EVENT_READ:
            return
        try:
            for kind, value, fd in worker.receive(READ_BATCH):
                worker.last_seen = self._clock()
                if kind is Kind.HANDBACK:
                    self._hooks.hand_back(worker, fd, *value)  # type: ignore[arg-type, misc]
                elif kind is Kind.PUBLISH or kind is Kind.PUBLISH_TO:
                    self._hooks.relay(worker, kind, value)
                elif kind is Kind.HEARTBEAT:
                    worker.take_heartbeat(value, self._settings.worker_connections)  # type: ignore[arg-type]
                elif kind is Kind.READY:
                    self._ready(worker)
                elif kind is Kind.BOOT_FAILED:
                    worker.boot_error = value  # type: ignore[assignment]
        except EOFError:  # the worker is gone; its exit is reaped
            self._unwatch(worker)
        except frames.ProtocolError as exc:
            self._reject(worker, f"protocol violation: {exc}")
        except Exception:  # noqa: BLE001 - a worker's message must never end the master
            log.exception("%s: its message could not be handled", worker)
            self._reject(worker, "its message could not be handled (traceback above)")
