"""The boot sequence every worker runs, whatever its runtime, and the contract of a runtime.

A forked worker boots in one order: monkey-patch (a green runtime), import the app, give
it sids that carry the worker's tag, plug the runtime's server in behind the link to the
master, install the client manager, take the master's messages, start the heartbeats,
report ready, serve until drained, exit. :class:`Runtime` runs that sequence
(:meth:`Runtime.serve`) and the drain's policy (:meth:`Runtime.drain_waits`: keep the
sessions until they end or the graceful timeout, then close those left, spread over
``--drain-spread``); a runtime is a subclass that fills in what differs: its server and
link (:meth:`~Runtime.open`), its load for the heartbeats (:meth:`~Runtime.load`), what
is still in flight during a drain (:meth:`~Runtime.busy`), and how it waits and runs
things at the same time (:meth:`~Runtime.run`, :meth:`~Runtime.on_drain`,
:meth:`~Runtime.start_heartbeats`). :class:`BlockingRuntime` fills in the last three for
a runtime whose waits block a (green or real) thread: eventlet, gevent, threading; the
asyncio runtime fills them in with its event loop.

The master reaches a runtime's class by its path in :data:`cluster.protocol.spec.RUNTIMES`
and imports it only in the forked child (``Class(spec, sock).serve()``) or in the check
subprocess (``Class.check(target)``). This module imports no runtime, and nothing of the
app's libraries before :meth:`Runtime.patch` has run.
"""
from __future__ import annotations

import abc
import gc
import importlib
import logging
import os
import socket
import time
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterator, NoReturn, Protocol

from cluster.protocol import sids
from cluster.protocol.frames import Heartbeat, Kind
from cluster.protocol.spec import WorkerSpec

from . import ping_patience, spread
from .collector import Collector

if TYPE_CHECKING:
    from .loader import App

log = logging.getLogger("sticky_cluster.worker")

DRAIN_QUIET = 1.0
"""Seconds without a session or a hand-off after which a draining worker stops taking them."""

DRAIN_TICK = 0.1
"""Seconds between two looks at a drain's progress."""

WARM_MODULES = ("socketio", "engineio", "workers.loader", "workers.managers",
                "workers.access_log", "workers.limits", "workers.forwarded")
"""What a worker of every runtime imports besides its app (see :meth:`Runtime.warm`)."""


class Link(Protocol):
    """What the boot sequence uses of a runtime's link to the master (an
    :class:`~workers.inbox.Inbox` that the runtime reads and writes its own way)."""

    on_drain: Callable[[], None] | None
    closed: bool

    def start(self) -> None:
        """Start reading the master's messages."""

    def send(self, kind: Kind, payload: bytes = b"", fd: int | None = None) -> None:
        """Send one message to the master."""

    def idle_for(self) -> float:
        """Seconds since the last client was handed off."""


class Runtime(abc.ABC):
    """A worker runtime: the shared boot sequence, with the runtime's server plugged in.

    :param spec: the worker's settings, from the master.
    :param sock: the worker's end of its channel to the master.
    """

    name: ClassVar[str]
    """The runtime's key in :data:`cluster.protocol.spec.RUNTIMES` (the loader checks that
    the app needs this runtime)."""

    def __init__(self, spec: WorkerSpec, sock: socket.socket) -> None:
        self.spec = spec
        self.sock = sock
        self.app: App
        """The app, once loaded (:meth:`serve`)."""
        self.link: Link
        """The link to the master, once open (:meth:`boot`)."""
        self.lag = ping_patience.LoopLag(spec.heartbeat_interval)
        """How late the serving loop runs, from the heartbeats: not counted against a
        client's ping timeout (:mod:`workers.ping_patience`)."""
        self.collector = Collector()
        """The worker's full garbage collections (it notes the thresholds before the app's)."""

    warm_modules: ClassVar[tuple[str, ...]] = ()
    """The modules a worker of this runtime imports besides the app's own (its server and
    link): imported once by the workers' template, after :meth:`patch`."""

    @classmethod
    def warm(cls) -> None:
        """In the workers' template (:mod:`cluster.pool.template`): :meth:`patch`, then import
        the libraries every worker of this runtime imports, so that a worker forked from
        the template only has its app to load. An optional library that is not installed
        is left to the worker (which says so if its app needs it)."""
        cls.patch()
        for name in (*WARM_MODULES, *cls.warm_modules):
            try:
                importlib.import_module(name)
            except ImportError:
                log.debug("worker template: %s is not installed", name)
        # What the libraries allocated lives as long as the process: out of the collector's
        # sight, a worker's full collections neither walk it nor copy its pages (CPython's
        # advice for a parent that forks without exec: gc.freeze).
        gc.collect()
        gc.freeze()

    @classmethod
    def check(cls, target: str) -> str | None:
        """Load ``target`` the way a worker of this runtime would; a one-line error or None."""
        cls.patch()
        from .loader import TargetError, load

        try:
            load(target, cls.name)
        except TargetError as exc:
            return str(exc)
        return None

    def serve(self) -> NoReturn:
        """Boot the worker and serve until drained, then exit the process (status 0).

        Raises (before reporting ready) when the app cannot be loaded or started; the
        caller turns that into a boot-failure exit code.
        """
        self.patch()
        self.own_loop()
        from . import loader

        self.app = loader.load(self.spec.target, self.name)
        self.run()
        log.info("worker %d (slot %d) drained", os.getpid(), self.spec.slot)
        logging.shutdown()
        os._exit(0)

    def boot(self) -> None:
        """Make the app this worker's: its sids, the runtime's server and link, the managers."""
        from . import managers

        sids.install(self.app.server.eio, self.spec.tag, self.spec.host)
        ping_patience.install(self.lag)
        self.link = self.open()
        managers.install(self.app.server, self.spec, self.link)

    def ready(self) -> None:
        """Take the master's messages, start the heartbeats, and tell the master: ready."""
        self.link.on_drain = self.on_drain
        self.link.start()
        self.start_heartbeats()
        self.collector.take_over()
        self.link.send(Kind.READY)
        log.debug("worker %d (slot %d) serving (%s)", os.getpid(), self.spec.slot, self.name)

    def beat(self) -> None:
        """Send the master one heartbeat: this worker lives, and its :meth:`load`; note
        how late it comes (:attr:`lag`)."""
        self.lag.beat()
        load = self.load()
        self.link.send(Kind.HEARTBEAT, load.encode())
        self.collector.tick(load.sessions)

    def drain_waits(self, deadline: float) -> Iterator[float]:
        """A drain up to the closing of its last sessions: the pauses to sleep, one by one.

        The worker serves its open sessions (sid-routed requests still arrive) and takes
        hand-offs until it has had no session for :data:`DRAIN_QUIET` seconds (a
        session's next request may be on its way); then it takes no more
        (:meth:`stop_taking`), and what is still :meth:`busy` gets until ``deadline``
        (the graceful timeout, monotonic seconds). The caller then closes the sessions
        left without a goodbye, so that Socket.IO clients reconnect (to another worker)
        by themselves, spread over ``--drain-spread`` (:mod:`workers.spread`), and stops
        its server.
        """
        sockets = self.app.server.eio.sockets
        log.info("worker %d draining: %d sessions", os.getpid(), len(sockets))
        while time.monotonic() < deadline and (sockets or self.link.idle_for() < DRAIN_QUIET):
            yield DRAIN_TICK
        self.stop_taking()
        while time.monotonic() < deadline and self.busy():
            yield DRAIN_TICK

    def stop_taking(self) -> None:
        """Close the hand-offs that still arrive instead of serving them."""
        self.link.closed = True

    @classmethod
    def patch(cls) -> None:
        """Make the process fit the runtime before the app is imported (monkey-patching).
        The workers' template runs it too, then forks the workers (:meth:`own_loop`)."""

    @classmethod
    def own_loop(cls) -> None:
        """In each worker, after :meth:`patch`: make the runtime's loop this process's own
        (not one inherited from the workers' template), its uncaught errors logged."""

    @abc.abstractmethod
    def open(self) -> Link:
        """Plug the runtime's server in (with the worker's limits, forwarding, access log
        and, under ``--route sid``, the hand-back) and return its link to the master."""

    @abc.abstractmethod
    def load(self) -> Heartbeat:
        """The worker's load now: sessions (for placement), connections (the master
        stops placing here at ``--worker-connections``), and whether it is full."""

    @abc.abstractmethod
    def busy(self) -> bool:
        """Whether a draining worker still serves something it must let end."""

    @abc.abstractmethod
    def run(self) -> None:
        """:meth:`boot`, :meth:`ready`, then serve until the drain is over."""

    @abc.abstractmethod
    def on_drain(self) -> None:
        """The master asks the worker to drain: start draining, in the background."""

    @abc.abstractmethod
    def start_heartbeats(self) -> None:
        """Send a heartbeat (:meth:`beat`) every ``heartbeat_interval``, from the loop
        that serves the clients, so that a blocked loop is seen and killed."""


class BlockingRuntime(Runtime):
    """A runtime whose waits block the thread that waits, a green thread or a real one.

    It gives its way to start a thread and to sleep, how it serves until drained, and how
    its server stops; the drain and the heartbeats are this class's.
    """

    def run(self) -> None:
        """:meth:`boot`, :meth:`ready`, then :meth:`wait` until the drain is over."""
        self.boot()
        self.ready()
        self.wait()

    def on_drain(self) -> None:
        """Drain in a thread of the runtime's own."""
        self.spawn(self.drain, "drain")

    def start_heartbeats(self) -> None:
        """Beat from a thread of the runtime's own."""
        self.spawn(self._heartbeats, "heartbeat")

    def drain(self) -> None:
        """Drain (:meth:`~Runtime.drain_waits`), close the sessions left, stop the server."""
        deadline = time.monotonic() + self.spec.graceful_timeout
        for pause in self.drain_waits(deadline):
            self.sleep(pause)
        spread.close_green(self.app.server.eio.sockets, self.spec.drain_spread, self.sleep)
        self.stop()

    def _heartbeats(self) -> None:
        while True:
            self.sleep(self.spec.heartbeat_interval)
            self.beat()

    @abc.abstractmethod
    def spawn(self, function: Callable[[], Any], name: str) -> None:
        """Run ``function`` in a new thread of the runtime (``name``: what it is for)."""

    @abc.abstractmethod
    def sleep(self, seconds: float) -> None:
        """Sleep the runtime's way (other threads run meanwhile)."""

    @abc.abstractmethod
    def wait(self) -> None:
        """Serve until :meth:`stop` (the end of the drain); return then."""

    @abc.abstractmethod
    def stop(self) -> None:
        """The drain is over: stop the server, so that :meth:`wait` returns."""
