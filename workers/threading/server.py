"""The threading worker's HTTP server: one poller thread, a bounded pool of request threads.

Why not an existing threaded WSGI server (cheroot, waitress, wsgiref, gunicorn's gthread
worker)? They accept from a listening socket of their own, and a thread of theirs reads
each new connection's request line and headers with a per-read socket timeout: a silent
connection, or one that sends a header byte now and then, holds a thread (and with
``--threads`` threads, the whole worker) for as long as it likes. None has a hook to
give a request back to the master (per-request hand-back) before it is parsed, nor a
way to let a websocket library take the socket without writing a response after it
(waitress has no websockets at all). Adding all that means overriding their private
internals, so the server is ours; the HTTP/1.1 parsing and framing is h11's
(:mod:`workers.threading.http`).

- :class:`Server` keeps every connection that waits for a request's head in one
  selector, read by one thread without blocking: a silent or slow client costs a socket
  and its bytes, never a thread, and is closed at its deadline (``header_timeout`` from
  the hand-off or from the first byte of a keep-alive request; ``keepalive_timeout``
  between two requests). A head over :data:`~workers.threading.http.HEAD_LIMIT` is
  answered ``431`` and closed as soon as it passes the limit.
- A complete head is decided on the spot: another worker's session goes back to the
  master (``--route sid``, :mod:`workers.handback`); an Engine.IO POST over the body
  limit is answered ``413`` (``411`` without a length) before any of it is read
  (:func:`workers.limits.body_refusal`); anything else goes to the pool.
- The pool (:class:`workers.threading.pool.ThreadPool`, ``--threads``) runs the app. A
  websocket holds its thread for its whole life; when every thread is busy the worker is
  *full* (its heartbeat says so and the master places new clients elsewhere), and a
  request that still waits for a thread after :data:`BUSY_WAIT` seconds is answered
  ``503``, not left hanging.
- The same loop runs the worker's timers (:mod:`workers.threading.timers`: Engine.IO's
  pings) and calls ``tick`` every heartbeat interval: a worker whose poller is stuck,
  or whose interpreter is held (code that keeps the GIL), stops heartbeating and is
  killed by the master.
"""
from __future__ import annotations

import heapq
import itertools
import logging
import os
import queue
import selectors
import socket
import time
from typing import Any, Callable

import h11

from cluster.protocol.frames import RESUME_LIMIT

from ..handback import goes_back
from ..limits import LINGER, LINGER_LIMIT, HttpLimits, body_refusal
from .http import (HEAD_LIMIT, KEEP, RECV_SIZE, Connection, WSGIApp, head_end,
                   header, parse_head, serve_request)
from .pool import ThreadPool
from .timers import Timers

log = logging.getLogger("sticky_cluster.worker")

BUSY_WAIT = 3.0
"""Seconds a complete request may wait for a free thread before it is answered 503."""

RESPONSE_400 = (b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
RESPONSE_431 = (b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\n"
                b"Connection: close\r\n\r\n")
RESPONSE_503 = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nRetry-After: 1\r\n"
                b"Connection: close\r\n\r\n")

HandBack = Callable[[socket.socket, tuple[str, int], bytes], None]


class Server:
    """Serves handed-over client sockets to a WSGI app with ``threads`` threads.

    :param app: the WSGI app (wrapped in the access log and the error guard).
    :param limits: the header, keep-alive and body limits.
    :param threads: the pool's size (``--threads``).
    :param base_environ: the server's own WSGI keys (``SERVER_NAME``, ``wsgi.*``).
    :param own_tag: the tag this worker's sids carry.
    """

    def __init__(self, app: WSGIApp, limits: HttpLimits, threads: int,
                 base_environ: dict[str, Any], own_tag: int) -> None:
        self._app = app
        self._limits = limits
        self._environ = base_environ
        self._own_tag = own_tag
        self.hand_back: HandBack | None = None
        """Gives a connection back to the master (``--route sid``); None: serve all here."""
        self.place_new_sessions = False
        """Hand back a later request of a connection that starts a new session, for the
        master to place (:func:`workers.handback.goes_back`)."""
        self.pool: ThreadPool[Connection] = ThreadPool(threads, self._serve)
        self._selector = selectors.DefaultSelector()
        self._incoming: queue.SimpleQueue[Connection] = queue.SimpleQueue()
        self._wake_read, self._wake_write = socket.socketpair()
        self._wake_read.setblocking(False)
        self._wake_write.setblocking(False)
        self._selector.register(self._wake_read, selectors.EVENT_READ, None)
        self._deadlines: list[tuple[float, int, Connection]] = []
        self._order = itertools.count()
        self.timers = Timers(self._wake)
        """Calls due at a time, run by the poller (Engine.IO's pings: :mod:`workers.pings`)."""
        self.waiting = 0
        """Connections in the selector (waiting for a head, idle, or lingering)."""

    @property
    def connections(self) -> int:
        """Connections this worker holds: waiting for a request, queued, or served."""
        return self.waiting + self.pool.waiting + self.pool.busy

    def add(self, sock: socket.socket, address: tuple[str, int], preface: bytes) -> None:
        """Take a handed-over client (any thread); ``preface``: bytes to serve first, which
        another worker read (the first request is then served here whatever it names)."""
        conn = Connection(sock, address, bytearray(preface), serve_here=bool(preface))
        self._incoming.put(conn)
        self._wake()

    def run(self, tick: Callable[[], None], interval: float,
            stop: Callable[[], bool] = lambda: False) -> None:
        """Serve until ``stop()``; call ``tick()`` every ``interval`` seconds meanwhile."""
        next_tick = time.monotonic() + interval
        while not stop():
            now = time.monotonic()
            if now >= next_tick:
                tick()
                next_tick = now + interval
            timeout = next_tick - now
            if self._deadlines:
                timeout = min(timeout, self._deadlines[0][0] - now)
            due = self.timers.next_due()
            if due is not None:
                timeout = min(timeout, due - now)
            if self.pool.waiting:
                timeout = min(timeout, BUSY_WAIT / 4)
            for key, _events in self._selector.select(max(0.0, timeout)):
                if key.data is None:
                    self._take_incoming()
                else:
                    self._readable(key.data)
            now = time.monotonic()
            self.timers.run_due(now)
            self._expire(now)

    def close_idle(self) -> None:
        """Close every connection that waits for its next request (a drain's end)."""
        for key in list(self._selector.get_map().values()):
            if key.data is not None:
                self._close(key.data)

    # ------------------------------------------------------------------ the poller's own

    def _wake(self) -> None:
        try:
            self._wake_write.send(b"\0")
        except BlockingIOError:  # already woken
            pass

    def _take_incoming(self) -> None:
        try:
            while self._wake_read.recv(4096):
                pass
        except BlockingIOError:
            pass
        now = time.monotonic()
        while True:
            try:
                conn = self._incoming.get_nowait()
            except queue.Empty:
                return
            if conn.buffer:  # a resumed connection, or a keep-alive one with bytes behind
                conn.idle = False
                self._watch(conn, now + self._limits.header_timeout)
                self._head_maybe_complete(conn)
            else:
                conn.idle = True
                timeout = self._limits.keepalive_timeout if conn.served else \
                    self._limits.header_timeout
                self._watch(conn, now + timeout)

    def _watch(self, conn: Connection, deadline: float) -> None:
        """Wait for ``conn``'s bytes in the selector, until ``deadline``."""
        conn.deadline = deadline
        heapq.heappush(self._deadlines, (deadline, next(self._order), conn))
        try:
            self._selector.register(conn.sock, selectors.EVENT_READ, conn)
            self.waiting += 1
        except KeyError:  # already registered
            pass

    def _unwatch(self, conn: Connection) -> None:
        try:
            self._selector.unregister(conn.sock)
            self.waiting -= 1
        except (KeyError, ValueError):
            pass
        conn.deadline = 0.0

    def _close(self, conn: Connection) -> None:
        self._unwatch(conn)
        conn.sock.close()

    def _answer(self, conn: Connection, response: bytes) -> None:
        """Send ``response`` (it fits the socket's buffer: no wait) and close."""
        try:
            conn.sock.send(response, socket.MSG_DONTWAIT)
        except OSError:
            pass
        self._close(conn)

    def _expire(self, now: float) -> None:
        deadlines = self._deadlines
        while deadlines and deadlines[0][0] <= now:
            deadline, _order, conn = heapq.heappop(deadlines)
            if conn.deadline != deadline:  # rescheduled, or no longer watched
                continue
            if not conn.lingering and not conn.idle:
                log.debug("worker %d: %s sent no complete request within %.3g s", os.getpid(),
                          conn.address, self._limits.header_timeout)
            self._close(conn)
        for conn in self.pool.expired(BUSY_WAIT):
            log.warning("worker %d: every one of its %d threads is busy; a request of %s waited "
                        "%.0f s and is answered 503", os.getpid(), self.pool.size,
                        conn.address[0] if conn.address else "?", BUSY_WAIT)
            self._answer(conn, RESPONSE_503)

    def _readable(self, conn: Connection) -> None:
        try:
            data = conn.sock.recv(RECV_SIZE, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._close(conn)
            return
        if conn.lingering:
            conn.dropped += len(data)
            if conn.dropped >= LINGER_LIMIT:
                self._close(conn)
            return
        if conn.idle:
            conn.idle = False
            self._unwatch(conn)
            self._watch(conn, time.monotonic() + self._limits.header_timeout)
        conn.buffer += data
        self._head_maybe_complete(conn)

    def _head_maybe_complete(self, conn: Connection) -> None:
        """Act on ``conn``'s head if it is complete; answer 431 if it is over the limit."""
        end = head_end(conn)
        if end is None:
            if len(conn.buffer) > HEAD_LIMIT:
                self._answer(conn, RESPONSE_431)
            return
        if end > HEAD_LIMIT:
            self._answer(conn, RESPONSE_431)
            return
        self._unwatch(conn)
        if self._handed_back(conn):
            return
        conn.serve_here = False
        try:
            request = parse_head(conn)
        except h11.RemoteProtocolError:
            self._answer(conn, RESPONSE_400)
            return
        target = request.target.decode("latin-1")
        refusal = body_refusal(request.method.decode("latin-1"), target.partition("?")[0],
                               header(request, b"content-length"),
                               header(request, b"transfer-encoding"), self._limits)
        if refusal is not None:
            self._refuse(conn, refusal)
            return
        self.pool.submit(conn)

    def _handed_back(self, conn: Connection) -> bool:
        """Give ``conn`` back to the master if its request is another worker's session's,
        or a new session on a connection that served a request already (to be placed)."""
        if self.hand_back is None or conn.serve_here:
            return False
        line = bytes(conn.buffer[:conn.buffer.find(b"\n") + 1])
        if (not goes_back(line, self._own_tag, self.place_new_sessions and conn.served)
                or len(conn.buffer) > RESUME_LIMIT):
            return False
        self.hand_back(conn.sock, conn.address, bytes(conn.buffer))
        conn.sock.close()  # no shutdown: the connection lives on in another worker
        return True

    def _refuse(self, conn: Connection, answer: bytes) -> None:
        """Answer ``answer`` without reading the body, then read and drop what still comes
        for :data:`~workers.limits.LINGER` seconds, :data:`~workers.limits.LINGER_LIMIT`
        bytes at most (so that the client sees the answer), and close."""
        length = header(conn.request, b"content-length")  # type: ignore[arg-type]
        log.info("worker %d: refused a POST body of %s bytes from %s (limit %d): %s",
                 os.getpid(), length or "unknown",
                 conn.address[0] if conn.address else "?", self._limits.max_body,
                 answer[9:12].decode())
        try:
            conn.sock.send(answer, socket.MSG_DONTWAIT)
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            conn.sock.close()
            return
        conn.lingering = True
        self._watch(conn, time.monotonic() + LINGER)

    # ------------------------------------------------------------------ pool threads

    def _serve(self, conn: Connection) -> None:
        """Serve ``conn``'s request (in a pool thread); a kept-alive connection goes back
        to the poller for its next one."""
        try:
            outcome = serve_request(conn, self._app, self._environ, self._limits.header_timeout)
        except Exception:  # noqa: BLE001 - a bug here must not kill the pool's thread
            log.exception("worker %d: serving %s failed", os.getpid(), conn.address)
            conn.sock.close()
            return
        if outcome == KEEP:
            conn.served = True
            self._incoming.put(conn)
            self._wake()
