"""The master: one process, one thread, one selectors loop.

Signals (and the embedding API's method calls) are queued and handled by the loop,
one ``handle_<signal>`` method each, as in gunicorn's arbiter; never inside a signal
handler. The loop owns the policy (when to roll, scale or stop, when to give up) and
wires the rooms that do the work, each the one owner of its concern:

* :mod:`cluster.commands`: the signal and command queue that wakes the loop;
* :mod:`cluster.intake.acceptor`: the listening sockets, and when the loop accepts on them;
* :mod:`cluster.intake.intake`: a new connection's peek, PROXY header
  (:mod:`cluster.intake.intake_decision`);
* :mod:`cluster.intake.dispatch`: each connection to the worker it belongs to;
* :mod:`cluster.pool.pool`: the workers, their states and transitions (fork in
  :mod:`cluster.pool.supervisor`, the record of one worker in :mod:`cluster.pool.worker`);
* :mod:`cluster.relay`: the embedded pub/sub bus between the workers;
* :mod:`cluster.pool.forwarder_process`: with several hosts, the forwarder (a child beside
  the workers that relays another host's requests there), and :mod:`cluster.master_hosts`:
  this host's id, claimed at start and given up at exit;
* :mod:`cluster.ops.status`: what the master tells operators (facts, status file).

Every turn of the loop serves what is ready, runs the queued commands, then ticks:
timers of the pending connections, the pool's reconcile and heartbeat scan, the
operators' servers.
"""
from __future__ import annotations

import logging
import os
import selectors
import signal
import time
from typing import Callable, Mapping

from .commands import CommandQueue
from .hosts.addresses import format_address
from .intake.acceptor import Acceptor
from .intake import fast_path
from .intake.dispatch import Dispatcher
from .intake.intake import Intake
from .ops import status
from .ops.events import EventLog
from .ops.pidfile import PidFileError
from .ops.systemd import Notifier, inherited_listeners
from .master_hosts import HostId
from .pool.forwarder_process import ForwarderHooks, ForwarderProcess
from .pool.pool import WorkerPool, drain_limit
from .pool.pool_wiring import PoolHooks, SelectorWatcher
from .pool.worker import Worker
from .pool.supervisor import Forker
from .relay import Relay
from .setup.config import ConfigError, Settings, make_settings
from .setup.hooks import Hooks
from .setup.logs import configure_logging, reopen_log_files
from .setup.preflight import ClusterError, check_files, preflight
from .setup.proctitle import set_title
from .setup.reload import Reloader

log = logging.getLogger("sticky_cluster.master")

HANDLED_SIGNALS = ("HUP", "QUIT", "INT", "TERM", "TTIN", "TTOU", "USR1", "CHLD")
STOP_SIGNALS = (signal.SIGQUIT, signal.SIGINT, signal.SIGTERM)
FAST_STOP_TIMEOUT = 5.0
"""Seconds workers get to exit on a fast stop before SIGKILL."""
IDLE_WAKE = 0.25
"""Seconds the loop sleeps at most when nothing happens, for its timers."""
OPERATIONS_TICK = 0.1
"""Seconds between two looks at the status server, control socket and systemd watchdog,
and between two scans of the workers' heartbeats and deadlines."""
REAP_INTERVAL = 1.0
"""Seconds between two reaps without a CHLD: a safety net, as gunicorn's reconcile; CHLD
reaps at once."""


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
    meanings are the table :data:`cluster.setup.options.OPTIONS` (docs/options.md is
    made from it).

    :param hooks: hook name -> function (:mod:`cluster.setup.hooks`: ``on_starting``,
                  ``when_ready``, ``pre_fork``, ``post_fork``, ``worker_exit``,
                  ``on_reload``, ``on_exit``), as a config file defines them.
    """

    def __init__(self, app: object, hooks: Mapping[str, Callable] | None = None,
                 **options: object) -> None:
        self.settings: Settings = make_settings(app, **options)
        try:
            self._hooks = Hooks(hooks, self.settings.hook_timeout)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        self._commands = CommandQueue()
        self._selector: selectors.BaseSelector | None = None
        self._forker = Forker(self.settings, lambda: self._acceptor.binds, self._forget_in_child,
                              self._hooks, self)
        self._reloader: Reloader | None = None
        self._files = status.RunFiles(self.settings.pid_file)
        hooks = PoolHooks(changed=self._files.changed, serving_changed=self._serving_changed,
                          roll_ended=self._roll_ended, halt=self._halt)
        self._pool = WorkerPool(self.settings, self._forker, hooks,
                                cpus=len(os.sched_getaffinity(0)))
        self._dispatcher = Dispatcher(self._pool, self.settings)
        self._relay = Relay(self._pool)
        self._python_loop_why = fast_path.unavailable(self.settings)
        """Why new connections are handed off by the Python loop; None: by the C loop."""
        self._intake = Intake(self._dispatcher, self.settings,
                              None if self._python_loop_why else
                              fast_path.FastHandOff(self._pool, self._dispatcher, self.settings))
        self._host = HostId(self.settings)
        self._forwarder: ForwarderProcess | None = None
        if self.settings.several_hosts:
            self._forwarder = self._host.forwarder(
                ForwarderHooks(up=self._forwarder_up,
                               hand_back=self._dispatcher.hand_back_from_forwarder,
                               hosts=self._hosts_known, stranded=self._dispatcher.redeliver),
                self._forget_in_child)
        self._acceptor = Acceptor(self._intake, lambda: bool(self._pool.serving))
        hooks.stranded = self._dispatcher.redeliver
        hooks.hand_back = self._dispatcher.hand_back
        hooks.relay = self._relay.publish
        self._stopping: str | None = None
        self._stop_deadline = 0.0
        self._halt_reason: str | None = None
        self._announced_ready = False
        self._started = False
        self._early_hup = False
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

    # ----------------------------------------------------------------- public API

    def run(self) -> None:
        """Start the cluster and serve until stopped; raise ClusterError on failure.

        A stop signal that arrives before the workers are forked stops at once; other
        signals wait for the loop (a HUP then has nothing to restart).
        """
        if self.settings.umask is not None:
            os.umask(self.settings.umask)
        check_files(self.settings)
        try:
            configure_logging(self.settings.log_level, self.settings.log_file,
                              self.settings.identity.owner if self.settings.identity else None,
                              self.settings.log_format, self.settings.adapter)
        except OSError as exc:
            raise ClusterError(f"cannot write the log file {self.settings.log_file}: "
                               f"{exc.strerror}") from None
        self._events.attach()
        set_title(f"master {self._target_name()}")
        self._commands.install(HANDLED_SIGNALS, self._on_signal)
        try:
            self._hooks.call("on_starting", self)
            self._forker.runtime = preflight(self.settings)
            self._claim_host()
            self._open_listeners()
            try:
                self._files.create()
            except PidFileError as exc:
                raise ClusterError(str(exc)) from None
            try:
                self._extras = status.open_servers(self.settings, self._selector, self)
            except ConfigError as exc:
                raise ClusterError(str(exc)) from None
            if self.settings.reload:
                self._reloader = Reloader(self.settings, self._selector, self._code_changed)
            self._forker.warm_up(self.settings.boot_timeout)
            self._started = True
            if self._early_hup:
                log.info("HUP before the workers started: they load the code as it is now")
            self._pool.start()
            if self._forwarder is not None:
                self._forwarder.start()
            self._loop()
        except _StoppedEarly as exc:
            log.info("stopped by %s before the workers started", exc)
        except ClusterError:
            raise
        except Exception as exc:  # a bug of ours: say it where the operator looks, then stop
            log.critical("master crashed; stopping every worker", exc_info=True)
            self._pool.signal_all(signal.SIGTERM)
            if self._forwarder is not None:
                self._forwarder.terminate()
            self._halt_reason = (f"master crashed: {type(exc).__name__}: {exc} "
                                 "(the traceback is in the log)")
        finally:
            self._hooks.call("on_exit", self)
            if self._reloader is not None:
                self._reloader.close()
            self._acceptor.close()
            self._intake.close()
            self._dispatcher.close()
            for extra in self._extras:
                extra.close()
            self._events.detach()
            self._files.remove()
            self._commands.restore(HANDLED_SIGNALS)
            if self._selector is not None:
                self._selector.close()
            self._end_forwarder()
            self._forker.close()
            self._host.release()
        log.info("relay totals: %s", self._relay.summary())
        log.info("routing totals: %s", status.routing_totals(self._intake, self._dispatcher))
        if self._halt_reason:
            raise ClusterError(self._halt_reason)
        log.info("master %d stopped", os.getpid())

    def check(self) -> None:
        """``--check``: load the target and reach the adapter as ``run`` would, then return.

        Raises ClusterError (one line) on the first problem; forks nothing, binds nothing.
        """
        check_files(self.settings)
        configure_logging(self.settings.log_level, None, log_format=self.settings.log_format,
                          secret_url=self.settings.adapter)  # the check's lines: to stderr
        self._forker.runtime = preflight(self.settings)

    def facts(self) -> dict:
        """What the master knows now, for ``/status``, ``/metrics`` and the control socket.

        Plain data (JSON-ready): the workers with their sessions (from their heartbeats),
        the routing, relay and restart counters, the loop's lag and the last events.
        No password: the adapter URL is shown redacted, and so is any URL with
        credentials in the text that comes from elsewhere (log lines, boot errors).
        ``hosts`` (several hosts only, else None): this host's id, its forwarder, the hosts
        it knows and what it forwarded to each. ``handoffs`` divides every hand-off by why
        its worker was chosen (they add up to the connections handed to a worker, hand-backs
        included); ``handbacks`` counts
        the hand-backs of new sessions placed (also in ``handoffs``) and those refused (not
        a stream socket); ``accept_pauses`` the pauses for want of file descriptors.
        """
        return status.facts(
            self.settings, self._pool, self._intake, self._dispatcher, self._relay,
            binds=[str(bind) for bind in self._acceptor.binds], stopping=self._stopping,
            uptime=time.monotonic() - self._born, loop_lag=max(self._lag),
            events=self._events.recent(), accept_pauses=self._acceptor.out_of_files.count,
            hosts=None if self._forwarder is None else status.hosts_facts(
                self._host.id, format_address(self._host.address), self._forwarder,
                self._dispatcher))

    def reload(self) -> None:
        """Rolling restart: replace every worker, one slot at a time (like SIGHUP)."""
        self._commands.post(self.handle_hup)

    def scale(self, workers: int) -> None:
        """Run ``workers`` worker processes from now on (at least 1)."""
        self._commands.post(lambda: self._scale_to(workers))

    def stop(self, graceful: bool = False) -> None:
        """Stop the cluster: at once (like SIGINT) or after draining (like SIGTERM)."""
        self._commands.post(self.handle_term if graceful else self.handle_int)

    # ------------------------------------------------------------------ signals

    def handle_hup(self) -> None:
        """Rolling restart, slot by slot: new worker ready, then the old one drains.

        A HUP during a roll starts it over, so that every slot ends up on a worker
        forked after the last HUP.
        """
        if self._stopping:
            return
        self._hooks.call("on_reload", self)
        self._notifier.reloading()
        self._forker.renew_template(SelectorWatcher(self._selector), self._roll)

    def _roll(self) -> None:
        """The new workers' template is warm (or will not be): roll the workers."""
        if not self._stopping:
            self._pool.roll()

    def handle_ttin(self) -> None:
        """One worker more."""
        self._scale_to(self._pool.size + 1)

    def handle_ttou(self) -> None:
        """One worker less (never fewer than one)."""
        self._scale_to(self._pool.size - 1)

    def handle_term(self) -> None:
        """Graceful stop (gunicorn's and uvicorn's TERM, what Docker, Kubernetes and systemd
        send): close the listeners, let the workers drain their sessions."""
        self._begin_stop("graceful")

    def handle_int(self) -> None:
        """Fast stop: close the listeners, stop the workers, kill what is left."""
        self._begin_stop("fast")

    handle_quit = handle_int

    def handle_usr1(self) -> None:
        """Reopen the log file now (workers reopen it at their next line by themselves)."""
        reopen_log_files()
        log.info("log files reopened")

    def handle_chld(self) -> None:
        """Reap dead workers; replace them in their slots (also once a second, in case);
        and the forwarder (respawned after a backoff)."""
        for pid, wait_status in self._pool.reap():
            if self._forwarder is not None:
                self._forwarder.exited(pid, wait_status)

    # --------------------------------------------------------------------- loop

    def _loop(self) -> None:
        assert self._selector is not None
        while not (self._stopping and not self._pool.by_pid
                   and not (self._forwarder is not None and self._forwarder.alive)):
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
        return self._acceptor.next_wake(time.monotonic(), IDLE_WAKE)

    def _run_commands(self) -> None:
        for command in self._commands.take():
            if isinstance(command, int):
                name = signal.Signals(command).name[3:].lower()
                getattr(self, f"handle_{name}")()
            else:
                command()

    def _tick(self, now: float) -> None:
        self._measure_lag(now)
        self._intake.expire(now)
        if now >= self._operations_due:  # not on every turn: a turn may be one accept batch
            self._operations_due = now + OPERATIONS_TICK
            self._tick_operations(now)
            self._pool.check_heartbeats(now)
            self._forker.tick(now)
            if self._forwarder is not None:
                self._forwarder.tick(now)
        if self._dispatcher.holding:
            self._dispatcher.release()
        if now >= self._reap_due:
            self._reap_due = now + REAP_INTERVAL
            self.handle_chld()
        self._acceptor.resume_if_due(now)
        if self._stopping:
            if now >= self._stop_deadline:
                self._pool.kill_all("still running at the stop deadline")
                if self._forwarder is not None:
                    self._forwarder.kill("still running at the stop deadline")
                self._stop_deadline = now + FAST_STOP_TIMEOUT
        else:
            self._pool.reconcile(now)
            self._pool.check_recycling(now)
        self._files.update(lambda: status.snapshot(self._pool, self._stopping))

    def _tick_operations(self, now: float) -> None:
        """The operators' side: systemd's watchdog and STATUS=, the status and control servers."""
        self._notifier.tick(now)
        if self._announced_ready and self._notifier.enabled:
            self._notifier.status(status.status_line(self._pool))
        for extra in self._extras:
            extra.tick(now)

    # ------------------------------------------------------------------ workers

    def _serving_changed(self) -> None:
        """A slot got or lost its serving worker: accept or not; announce readiness."""
        self._acceptor.update()
        self._dispatcher.release()
        if not self._announced_ready and len(self._pool.serving) == self._pool.size:
            self._announced_ready = True
            log.info("cluster ready: %d workers serving on %s (hand-off loop in %s)",
                     self._pool.size, ", ".join(str(bind) for bind in self._acceptor.binds),
                     f"Python: {self._python_loop_why}" if self._python_loop_why else "C")
            self._notifier.ready(status.status_line(self._pool))
            self._hooks.call("when_ready", self)

    def _code_changed(self, runtime: str) -> None:
        """``--reload``: the app's files changed and still load (with ``runtime``): roll."""
        if self.settings.runtime == "auto":
            self._forker.runtime = runtime
        self.handle_hup()

    def _roll_ended(self) -> None:
        self._notifier.ready(status.status_line(self._pool))

    def _scale_to(self, size: int) -> None:
        if not self._stopping:
            self._pool.resize(size)

    def _begin_stop(self, how: str) -> None:
        if self._stopping == "fast" or (self._stopping and how == "graceful"):
            return
        self._stopping = how
        self._notifier.stopping()
        self._files.changed()
        self._acceptor.close()
        if self._forwarder is not None:  # first: this host leaves the directory of hosts
            if how == "graceful":
                self._forwarder.drain()
            else:
                self._forwarder.terminate()
        self._pool.stop(graceful=how == "graceful")
        self._stop_deadline = time.monotonic() + (
            FAST_STOP_TIMEOUT if how == "fast" else drain_limit(self.settings))

    def _halt(self, reason: str) -> None:
        log.error(reason)
        self._halt_reason = reason
        self._begin_stop("fast")

    # ------------------------------------------------------------- start / stop

    def _open_listeners(self) -> None:
        self._selector = selectors.DefaultSelector()
        self._commands.register(self._selector)
        self._intake.attach(self._selector)
        self._pool.attach(SelectorWatcher(self._selector))
        if self._forwarder is not None:
            self._forwarder.attach(SelectorWatcher(self._selector))
        try:
            self._acceptor.open(self._selector, self.settings.binds, inherited_listeners())
        except ConfigError as exc:
            raise ClusterError(str(exc)) from None

    # ---------------------------------------------------------------- several hosts

    def _claim_host(self) -> None:
        """Several hosts: take this host's id (claimed in the directory, or ``--host-id``
        with ``--peers``) before any fork; the workers put it in every sid."""
        if not self.settings.several_hosts:
            return
        host = self._host.claim()
        self._forker.host = self._dispatcher.host = host
        self._intake.set_peers(self._host.peer_ips(self.settings.static_peers))

    def _forwarder_up(self, link: Worker | None) -> None:
        """The forwarder serves (``link``) or no longer does (None)."""
        self._dispatcher.forwarder = link
        if link is not None:
            self._dispatcher.release()

    def _hosts_known(self, facts: dict) -> None:
        """The forwarder's ``HOSTS``: the directory now (the peers whose PROXY header is
        believed) and its counters (kept by the forwarder process for :meth:`facts`)."""
        self._intake.set_peers(self._host.peer_ips_of(facts))

    def _end_forwarder(self) -> None:
        """At the very end: kill the forwarder if it still runs, and reap it (no orphan)."""
        if self._forwarder is None or not self._forwarder.alive:
            return
        link = self._forwarder.link
        self._forwarder.kill("still running when the master exits")
        try:
            os.waitpid(link.pid, 0)  # type: ignore[union-attr]
        except ChildProcessError:
            pass

    def _target_name(self) -> str:
        target = self.settings.target
        return target if isinstance(target, str) else type(target).__name__

    def _on_signal(self, signum: int, _frame: object) -> None:
        if not self._started and signum in STOP_SIGNALS:
            raise _StoppedEarly(signal.Signals(signum).name)
        if not self._started and signum == signal.SIGHUP:
            self._early_hup = True  # no worker yet: the ones to come load the code as it is now
            return
        self._commands.put_signal(signum)

    def _forget_in_child(self) -> None:
        self._acceptor.forget_in_child()
        self._intake.close()
        self._dispatcher.close()
        for extra in self._extras:
            extra.forget_in_child()
        self._notifier.close()
        if self._reloader is not None:
            self._reloader.forget_in_child()
        self._events.detach()
        if self._selector is not None:
            self._selector.close()
        self._pool.close_all_in_child()
        if self._forwarder is not None:
            self._forwarder.close_in_child()
        self._files.close_in_child()
        self._commands.close()

