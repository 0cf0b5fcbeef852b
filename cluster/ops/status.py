"""What the master tells about itself: the facts, the status file, systemd's STATUS=.

Plain functions of the master's parts (the pool, the dispatcher, the relay), read
only: nothing here changes what it reports on. :func:`facts` feeds ``/status``,
``/metrics`` and the control socket; :func:`snapshot` is the ``--pid FILE`` status file;
:func:`status_line` is the one line systemd shows; :func:`open_servers` starts the
status server and the control socket, the operators' two doors, on the master's loop;
:class:`RunFiles` keeps the ``--pid`` file and its status file.
"""
from __future__ import annotations

import collections
import functools
import logging
import os
import selectors
import time
from typing import TYPE_CHECKING, Callable

from cluster.intake.dispatch import Dispatcher
from cluster.intake.intake import Intake
from cluster.pool.forwarder_process import ForwarderProcess
from cluster.pool.pool import RESTART_REASONS, WorkerPool
from cluster.pool.worker import State
from cluster.protocol import adapters
from cluster.relay import Relay
from cluster.setup.config import ConfigError, Settings
from cluster.setup.options import BALANCES

from .pidfile import PidFile, PidFileError, StatusFile

if TYPE_CHECKING:
    from .control_socket import Controlled

log = logging.getLogger("sticky_cluster.master")


def facts(settings: Settings, pool: WorkerPool, intake: Intake, dispatcher: Dispatcher,
          relay: Relay, *, binds: list[str], stopping: str | None, uptime: float,
          loop_lag: float, events: list[dict], accept_pauses: int,
          hosts: dict | None = None) -> dict:
    """What the master knows now, as plain data (JSON-ready); see
    :meth:`cluster.master.Master.facts`. ``accept_pauses``: the pauses of accepting for want
    of file descriptors (:attr:`cluster.intake.acceptor.Acceptor.out_of_files`); ``hosts``:
    :func:`hosts_facts` with several hosts, else None."""
    now = time.monotonic()
    by_state = collections.Counter(w.state.value for w in pool.by_pid.values())
    clean = functools.partial(adapters.redact_text, url=settings.adapter)
    failure = pool.rolls["failure"]
    handbacks = dispatcher.handed_back + dispatcher.returned
    placed = dispatcher.handed_off - dispatcher.by_sid - dispatcher.rerouted
    return {
        "master": os.getpid(), "size": pool.size, "uptime": round(uptime, 3),
        "stopping": stopping,
        "rolling": pool.rolling,
        "binds": binds,
        "adapter": adapters.redact(settings.adapter) if settings.adapter else None,
        "workers": [{"slot": w.slot, "pid": w.pid, "state": w.state.value,
                     "sessions": w.sessions, "uptime": round(now - w.born, 3),
                     "heartbeat_age": round(now - w.last_seen, 3),
                     "restarts": pool.slot_restarts[w.slot]}
                    for w in sorted(pool.by_pid.values(), key=lambda w: (w.slot, w.born))],
        "workers_by_state": {state.value: by_state[state.value] for state in State},
        "handoffs": {"sid": dispatcher.by_sid - handbacks,
                     "handed_back": dispatcher.handed_back, "returned": dispatcher.returned,
                     **{balance: placed if balance == dispatcher.balance else 0
                        for balance in BALANCES},
                     "rerouted": dispatcher.rerouted},
        "placement_skips": {"full": dispatcher.past_full, "late": dispatcher.past_late},
        "handbacks": {"placed": dispatcher.placed_back,
                      "refused": dispatcher.not_sockets.count},
        "accept_pauses": accept_pauses,
        "connections": {"accepted": intake.accepted, "timed_out": intake.timed_out,
                        "refused": intake.refused, "shed": intake.shed, "held": dispatcher.held,
                        "dropped": dispatcher.dropped},
        "restarts": {reason: pool.restarts[reason] for reason in RESTART_REASONS},
        "relay": {"broadcast": relay.broadcasts, "unicast": relay.unicasts,
                  "dropped": relay.dropped, "bytes": relay.bytes},
        "pending": intake.pending_count,
        "loop_lag": round(loop_lag, 6),
        "rolls": {**pool.rolls, "failure": failure and (failure[0], clean(failure[1]))},
        "events": [{**event, "message": clean(event["message"])} for event in events],
        "hosts": hosts,
    }


PEER_COUNTERS = ("requests", "upgrades", "bytes_in", "bytes_out", "errors", "forward_seconds",
                 "forwards")
"""What the forwarder counts per peer host (its ``HOSTS`` message), as ``/status`` shows it."""
REFUSALS = ("unknown_host", "loop", "unanswered")
"""Why the forwarder answered a request itself (400 or 502) instead of forwarding it."""


def hosts_facts(host_id: int, advertise: str, forwarder: ForwarderProcess,
                dispatcher: Dispatcher) -> dict:
    """Several hosts: this host's id and address, its forwarder, the hosts it knows and
    what was forwarded to each (from the forwarder's last ``HOSTS`` message: totals since
    it started, numbers only), the requests of this host's sessions it relayed to this
    host's workers (``relayed_own``), and the master's own counts of connections sent to the
    forwarder, held while it was down, and handed back by it."""
    reported = forwarder.hosts
    known = reported.get("hosts")
    peers = reported.get("peers")
    refused = reported.get("refused")
    own = reported.get("own")
    link = forwarder.link
    return {
        "host_id": host_id, "advertise": advertise,
        "forwarder": {"pid": link.pid if link else None, "up": forwarder.up,
                      "respawns": forwarder.respawns,
                      "connections": link.sessions if link else 0},
        "known": ({str(host): str(where) for host, where in known.items()}
                  if isinstance(known, dict) else {}),
        "peers": ({str(host): {name: _number(counts.get(name)) for name in PEER_COUNTERS}
                   for host, counts in peers.items() if isinstance(counts, dict)}
                  if isinstance(peers, dict) else {}),
        "refused": {reason: _number(refused.get(reason) if isinstance(refused, dict) else 0)
                    for reason in REFUSALS},
        "relayed_own": _number(own.get("requests") if isinstance(own, dict) else 0),
        "forwarded": dispatcher.forwarded, "held": dispatcher.forward_held,
        "handed_back": dispatcher.forwarded_back,
    }


def _number(value: object) -> float:
    """A count the forwarder reported, or 0 when it is not a number."""
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


def routing_totals(intake: Intake, dispatcher: Dispatcher) -> str:
    """The connections' counters, for the log when the master stops."""
    each = (dispatcher.handback_seconds / dispatcher.handed_back * 1e6
            if dispatcher.handed_back else 0.0)
    return (f"{intake.accepted} accepted, {dispatcher.by_sid} by sid, "
            f"{dispatcher.rerouted} rerouted, "
            f"{dispatcher.handed_back} handed back ({each:.0f} µs CPU each), "
            f"{dispatcher.returned} returned, "
            f"{dispatcher.past_full} past a full worker, {dispatcher.past_late} past a late "
            f"worker, {dispatcher.held} held, {intake.timed_out} timed out, "
            f"{intake.refused} refused, {intake.shed} shed, "
            f"{dispatcher.not_sockets.count} hand-backs not a socket, {dispatcher.dropped} dropped"
            + (f", {dispatcher.forwarded} to the forwarder ({dispatcher.forward_held} held "
               f"for it), {dispatcher.forwarded_back} handed back by it"
               if dispatcher.forwarded or dispatcher.forward_held or dispatcher.forwarded_back
               else ""))


def snapshot(pool: WorkerPool, stopping: str | None) -> dict:
    """What runs now, as ``--pid FILE`` keeps it in ``FILE.json``.

    The size, the serving pid of each slot, the booting and draining pids, and
    whether a roll or a stop is under way.
    """
    by_state: dict[State, list[int]] = {state: [] for state in State}
    for worker in pool.by_pid.values():
        by_state[worker.state].append(worker.pid)
    return {"master": os.getpid(), "size": pool.size,
            "serving": {str(slot): worker.pid for slot, worker in sorted(pool.serving.items())},
            "booting": sorted(by_state[State.BOOTING]),
            "draining": sorted(by_state[State.DRAINING]),
            "rolling": pool.rolling,
            "stopping": stopping}


def status_line(pool: WorkerPool) -> str:
    """systemd's STATUS=: the workers serving and the sessions they hold."""
    serving = pool.serving.values()
    return (f"{len(serving)} of {pool.size} workers serving, "
            f"{sum(w.sessions for w in serving)} sessions")


def open_servers(settings: Settings, selector: selectors.BaseSelector,
                 master: Controlled) -> list:
    """Start the status server and the control socket, when enabled, on ``selector``.

    ``master`` is what both act on: its facts, and its ``scale``, ``reload`` and ``stop``.

    Returns them (the loop ticks them, and closes them at the end). Raises ConfigError
    when one cannot be opened, with none left open.
    """
    servers: list = []
    try:
        if settings.status_bind is not None:
            from .status_http import StatusServer
            from .status_site import site

            respond, snapshot = site(master.facts)
            server = StatusServer(settings.status_bind, respond, snapshot.held)
            server.open(selector)
            servers.append(server)
            log.info("status at http://%s/ (/metrics, /healthz, /status)", settings.status_bind)
        if settings.control_path is not None:
            from .control_socket import ControlServer

            control = ControlServer(settings.control_path, master)
            control.open(selector)
            servers.append(control)
    except ConfigError:
        for server in servers:
            server.close()
        raise
    return servers


class RunFiles:
    """``--pid FILE`` and ``FILE.json`` (what runs), kept by the loop; nothing without a path.

    The status file is rewritten on the loop's tick after something changed
    (:meth:`changed`), not at each change: a roll changes the table several times per turn.
    """

    def __init__(self, path: str | None) -> None:
        self._path = path
        self._pid_file: PidFile | None = None
        self._status: StatusFile | None = None
        self._due = False

    def create(self) -> None:
        """Write and lock the pid file; raises PidFileError (one line) when it cannot."""
        if self._path:
            pid_file = PidFile(self._path)
            pid_file.create()
            self._pid_file = pid_file
            self._status = StatusFile(pid_file.path)

    def changed(self) -> None:
        """Note that the status file is due to be rewritten."""
        self._due = True

    def update(self, snapshot: Callable[[], dict]) -> None:
        """Rewrite the status file with ``snapshot()`` if it is due (a failure is logged)."""
        if self._due and self._status is not None:
            self._due = False
            try:
                self._status.write(snapshot())
            except (OSError, PidFileError) as exc:
                log.warning("status file %s not written: %s", self._status.path, exc)

    def remove(self) -> None:
        """Remove both files (the master stops)."""
        if self._status:
            self._status.remove()
        if self._pid_file:
            self._pid_file.remove()

    def close_in_child(self) -> None:
        """In a new worker: close its copy of the pid file's descriptor (the lock stays
        with the master)."""
        if self._pid_file is not None:
            self._pid_file.close_in_child()
