"""The listening sockets, and when the master's loop accepts on them.

The master accepts only while a worker serves: a connection accepted with no worker
to take it would have to be held or dropped, so until one is ready (cold start, every
worker respawning) new clients wait in the listen backlog, where the kernel keeps
them for free. Accepting is switched by taking the listeners in and out of the
selector; nothing here ever sleeps: a pause is a deadline the loop's select timeout
honours (:meth:`Acceptor.next_wake`), and its tick takes the listeners back
(:meth:`Acceptor.resume_if_due`).

Listeners systemd passed (socket activation) are used as they are and closed, never
unlinked: their file stays for the next master.
"""
from __future__ import annotations

import logging
import os
import selectors
import socket
import time
from typing import Callable

from cluster.protocol.bursts import BurstLog
from cluster.setup.config import Bind

from . import listeners
from .intake import ACCEPT_BATCH, Intake

log = logging.getLogger("sticky_cluster.master")

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


class Acceptor:
    """The master's listeners, in the loop's selector while the master accepts.

    :param intake: takes what is accepted.
    :param can_accept: whether a worker serves (else clients wait in the backlog).
    """

    def __init__(self, intake: Intake, can_accept: Callable[[], bool]) -> None:
        self._intake = intake
        self._can_accept = can_accept
        self._selector: selectors.BaseSelector | None = None
        self.listeners: list[tuple[socket.socket, Bind]] = []
        self._inherited: set[socket.socket] = set()
        """Listeners systemd passed (socket activation): closed but never unlinked."""
        self.accepting = False
        self.paused_until = 0.0
        """When accepting resumes after a pause (0: not paused)."""
        self.out_of_files = BurstLog(log, logging.WARNING, "out of file descriptors: not "
                                     f"accepting for {ACCEPT_PAUSE:.1f} s at a time (ulimit -n)")
        """The pauses for want of file descriptors (``count``), logged once per burst."""

    @property
    def binds(self) -> list[Bind]:
        """Where the master listens."""
        return [bind for _sock, bind in self.listeners]

    def open(self, selector: selectors.BaseSelector, binds: list[Bind],
             inherited: list[tuple[socket.socket, Bind]]) -> None:
        """Listen at ``binds``, or on ``inherited`` when systemd passed listening sockets
        (:func:`cluster.ops.systemd.inherited_listeners`); accept later, on :meth:`update`.
        Raises ConfigError (one line) when one cannot be opened."""
        self._selector = selector
        self._inherited = {sock for sock, _bind in inherited}
        for sock, bind in inherited or [(listeners.open_listener(b), b) for b in binds]:
            self._intake.prepare(sock)
            self.listeners.append((sock, bind))
        for sock, bind in self.listeners:
            log.info("listening at %s (master %d)%s", bind, os.getpid(),
                     ", inherited from systemd" if sock in self._inherited else "")

    def update(self) -> None:
        """Accept while a worker serves and no pause is on; else leave the clients in
        the listen backlog."""
        assert self._selector is not None
        on = bool(self.listeners) and self._can_accept() and not self.paused_until
        if on == self.accepting:
            return
        self.accepting = on
        for sock, _bind in self.listeners:
            if on:
                self._selector.register(sock, selectors.EVENT_READ, self._on_readable)
            else:
                self._selector.unregister(sock)

    def next_wake(self, now: float, idle: float) -> float:
        """Seconds the loop may wait (``idle`` at most) before accepting resumes."""
        if self.paused_until:
            return max(0.0, min(idle, self.paused_until - now))
        return idle

    def resume_if_due(self, now: float) -> None:
        """Take the listeners back once a pause is over (and say how many pauses a burst
        of them had, once it is over).

        The listeners are tried at once, before they go back into the selector: under
        load the next batch waits in the backlog, is accepted now, and the listeners stay
        out for the next linger. They go back only when nothing was there, so a busy master
        pays no ``epoll_ctl`` pair per batch. (Measured at ~2,000 handshakes/s with 2
        workers: batches of one to a few connections, the pair was 5 % of the master's
        samples.)
        """
        if self.paused_until and now >= self.paused_until:
            self.paused_until = 0.0
            if self.listeners and self._can_accept():
                for sock, _bind in self.listeners:
                    self._on_readable(sock, selectors.EVENT_READ)
            self.update()
        self.out_of_files.flush()

    def close(self) -> None:
        """Stop listening: the listeners leave the selector and are closed (a Unix
        socket's file is removed, unless systemd owns it)."""
        for sock, bind in self.listeners:
            if self._selector is not None:
                try:
                    self._selector.unregister(sock)
                except (KeyError, ValueError):
                    pass
            if sock in self._inherited:
                sock.close()  # systemd's socket: its file stays for the next master
            else:
                listeners.close_listener(sock, bind)
        self.listeners = []
        self.accepting = False

    def forget_in_child(self) -> None:
        """In a new worker: close the listeners without touching their files."""
        for sock, _bind in self.listeners:
            sock.close()
        self.listeners = []

    def _on_readable(self, sock: socket.socket, _mask: int) -> None:
        accepted = self._intake.accepted
        if not self._intake.accept_from(sock):
            self.out_of_files.note()
            self._pause(ACCEPT_PAUSE)
        elif 0 < self._intake.accepted - accepted < ACCEPT_BATCH:  # a full batch: more wait
            self._pause(ACCEPT_LINGER)

    def _pause(self, seconds: float) -> None:
        """Leave new clients in the listen backlog for ``seconds``; the loop serves the rest
        meanwhile, and its tick takes the listeners back."""
        self.paused_until = max(self.paused_until, time.monotonic() + seconds)
        self.update()
