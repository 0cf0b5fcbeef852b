"""gevent.pywsgi's connection handler with the worker's limits (see :mod:`workers.limits`).

The gevent twin of :mod:`workers.eventlet.http`. ``gevent.pywsgi`` has no timeout at all
(a silent connection holds its greenlet, and a slot of ``--worker-connections``, for
ever), no head size limit of its own past the request line (``http.client``'s: 100
header lines of 64 KiB each, an 800 KB head is served), reads a POST body over the
limit until the client sends it all, and writes what goes wrong raw to standard error.
:class:`GuardedHandler`:

- gives the request line and the headers together one deadline, ``header_timeout``,
  from the hand-off (or from the first byte of a later keep-alive request);
- lets a keep-alive connection wait at most ``keepalive_timeout`` for its next request;
- while a plain HTTP request runs, times out each read and write of the socket after
  ``header_timeout``; an Engine.IO long poll waits in the app, not on the socket, so it
  is not cut; an upgraded websocket is never timed out here (Engine.IO pings it);
- reads a request line of at most pywsgi's ``MAX_REQUEST_LINE`` (``414``), header lines
  of at most :data:`~workers.limits.HEADER_LINE_LIMIT` and
  :data:`~workers.limits.HEAD_LIMIT` bytes of them in all (``400``), as eventlet does;
- answers ``413`` to an Engine.IO POST over the size limit (``411`` to one without a
  length) before anything reads its body, and closes; after this answer or a ``400``,
  it reads and drops what the client still sends for a moment, so that the client
  reads the answer instead of a reset;
- hands a websocket the connection's own socket (``environ["werkzeug.socket"]``), not the
  ``dup()`` simple-websocket makes of the one it finds under gevent's keys: one file
  descriptor per client, not two;
- lets go of a connection once its websocket ends: the socket was the websocket's, so
  pywsgi must neither write the ``200`` that Engine.IO "answers" after the session nor
  read the client's close frame as a next request (it answered it ``400`` and logged
  "Invalid HTTP method", and the client waited 3 s for its close to be answered);
- logs a bad request as one line of the worker's log, and an error of pywsgi itself
  with its traceback there too; the client gets a bare ``400`` (or ``500``).

A connection past ``--worker-connections`` is answered ``503`` by :mod:`workers.green_intake`.
"""
from __future__ import annotations

import errno
import io
import logging
import os
import socket
import time
from typing import Any

import gevent
from gevent import pywsgi

from ..limits import (HEAD_LIMIT, HEADER_LINE_LIMIT, LINGER, LINGER_LIMIT, HttpLimits,
                      body_refusal, refusal_line)
from ..simple_websocket_limits import SOCKET_KEY, TAKEN_OVER

log = logging.getLogger("sticky_cluster.worker")

REASON_LIMIT = 200
"""Characters of a bad request's reason written to the log, at most."""


class GuardedHandler(pywsgi.WSGIHandler):
    """``gevent.pywsgi.WSGIHandler`` with the worker's limits; use :func:`handler_for`."""

    limits: HttpLimits
    ignored_socket_errors = (*pywsgi.WSGIHandler.ignored_socket_errors, errno.EBADF)
    """A write to a connection that is already closed ends it quietly, as one to a client
    that reset it (pywsgi's own two): seen in a fast stop, a response finished after the
    worker had closed its socket was logged as an error with its traceback."""
    _served = False
    _header_timer: gevent.Timeout | None = None

    def handle_one_request(self) -> Any:
        try:
            result = super().handle_one_request()
        except gevent.Timeout as timeout:
            if timeout is not self._header_timer:
                raise
            log.debug("worker %d: %s sent no complete request within %.3g s", os.getpid(),
                      _peer(self.client_address), self.limits.header_timeout)
            return None
        finally:
            self._stop_header_timer()
        if isinstance(result, tuple) and self.socket is not None:  # a 400 or 414 to send
            self._answer_and_close(result[1])
            return None
        return result

    def read_requestline(self) -> str:
        self.socket.settimeout(None)
        if self._served and not self._next_request_within(self.limits.keepalive_timeout):
            return ""
        self._served = True
        self._header_timer = gevent.Timeout.start_new(self.limits.header_timeout)
        return super().read_requestline()

    def MessageClass(self, fp: Any, *args: Any) -> Any:  # noqa: N802 (pywsgi's name)
        return pywsgi.headers_factory(io.BytesIO(read_head(fp)))

    def get_environ(self) -> dict:
        self._stop_header_timer()
        upgrade = self.headers.get("upgrade", "").lower() == "websocket"
        self.socket.settimeout(None if upgrade else self.limits.header_timeout)
        environ = super().get_environ()
        environ[SOCKET_KEY] = self.socket  # for the websocket: no dup() (the docstring)
        return environ

    def handle_one_response(self) -> None:
        refusal = body_refusal(self.command, self.path, self.headers.get("content-length"),
                               self.headers.get("transfer-encoding"), self.limits)
        if refusal is not None:
            self._refuse_body(refusal)
            return
        super().handle_one_response()
        if self.environ.get(TAKEN_OVER):
            self._let_go()

    def _sendall(self, data: bytes) -> None:
        if not self.environ.get(TAKEN_OVER):  # after a websocket, Engine.IO "answers" 200
            super()._sendall(data)

    def _handle_client_error(self, ex: BaseException) -> tuple[str, bytes]:
        reason = "".join(char if char.isprintable() else repr(char)[1:-1]
                         for char in str(ex) or type(ex).__name__)
        if len(reason) > REASON_LIMIT:
            reason = reason[:REASON_LIMIT] + "…"
        log.info("worker %d: a bad request from %s: %s", os.getpid(),
                 _peer(self.client_address), reason)
        return "400", pywsgi._BAD_REQUEST_RESPONSE  # noqa: SLF001 (pywsgi's bare 400)

    def _log_error(self, kind: type, value: BaseException, tb: Any) -> None:
        if not issubclass(kind, gevent.GreenletExit):
            log.error("worker %d: serving %s failed", os.getpid(), _peer(self.client_address),
                      exc_info=(kind, value, tb))

    def _next_request_within(self, seconds: float) -> bool:
        """Wait until the next request's first byte is there; False on timeout or EOF."""
        data = b""
        try:
            with gevent.Timeout(seconds, False):
                data = self.rfile.peek(1)
        except OSError:
            return False
        return bool(data)

    def _stop_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _refuse_body(self, answer: bytes) -> None:
        log.info(refusal_line(self.headers.get("content-length"), self.client_address,
                              self.limits, answer))
        self.close_connection = True
        self._answer_and_close(answer)

    def _answer_and_close(self, answer: bytes) -> None:
        """Send ``answer``, then read and drop what the client still sends for a moment
        (:data:`~workers.limits.LINGER` seconds, :data:`~workers.limits.LINGER_LIMIT`
        bytes at most), so that it reads the answer instead of a reset."""
        try:
            self.socket.sendall(answer)
            self.socket.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + LINGER
            dropped = 0
            with gevent.Timeout(LINGER, False):
                while time.monotonic() < deadline and dropped < LINGER_LIMIT:
                    data = self.socket.recv(65536)
                    if not data:
                        break
                    dropped += len(data)
                    gevent.sleep(0)  # a recv with data there does not yield
        except OSError:
            pass

    def _let_go(self) -> None:
        """Close this handler's end of a connection its websocket has finished with:
        no read-out, no next request."""
        self.close_connection = True
        sock, self.socket = self.socket, None
        self.rfile.close()
        sock.close()


def read_head(fp: Any) -> bytes:
    """The header lines of a request and its blank line, read from ``fp``.

    Raises ValueError (pywsgi answers ``400``) on a line over
    :data:`~workers.limits.HEADER_LINE_LIMIT` bytes or a head over
    :data:`~workers.limits.HEAD_LIMIT`.
    """
    lines = []
    size = 0
    while True:
        line = fp.readline(HEADER_LINE_LIMIT + 1)
        if len(line) > HEADER_LINE_LIMIT:
            raise ValueError(f"a header line over {HEADER_LINE_LIMIT} bytes")
        size += len(line)
        if size > HEAD_LIMIT:
            raise ValueError(f"request headers over {HEAD_LIMIT} bytes")
        lines.append(line)
        if line in (b"\r\n", b"\n", b""):
            return b"".join(lines)


def handler_for(limits: HttpLimits) -> type[GuardedHandler]:
    """The handler class to give ``gevent.pywsgi.WSGIServer(handler_class=...)``."""
    return type("GuardedHandler", (GuardedHandler,), {"limits": limits})


def _peer(address: Any) -> str:
    return str(address[0]) if isinstance(address, tuple) else "a local client"
