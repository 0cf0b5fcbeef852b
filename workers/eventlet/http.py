"""eventlet.wsgi's HTTP protocol with the worker's limits (see :mod:`workers.limits`).

``eventlet.wsgi`` has one ``socket_timeout`` for everything and None by default, so a
connection that never finishes its request holds a green thread (and a slot of
``--worker-connections``) for ever; a per-read timeout would not stop one that sends a
byte now and then, and would cut idle websockets. :class:`GuardedProtocol` instead:

- gives the request line and the headers together one deadline, ``header_timeout``,
  from the hand-off (or from the first byte of a later keep-alive request);
- lets a keep-alive connection wait at most ``keepalive_timeout`` for its next request;
- while a plain HTTP request runs, times out each read and write of the socket after
  ``header_timeout`` (a client that stops sending its body or reading the answer); an
  Engine.IO long poll waits in the app, not on the socket, so it is not cut;
- never times out an upgraded websocket: Engine.IO pings it;
- tells the app (and the access log) the HTTP version the client used in
  ``SERVER_PROTOCOL``, where eventlet always writes ``HTTP/1.0``;
- answers ``413`` to an Engine.IO POST over the size limit (``411`` to one without a
  length) and closes, after reading and dropping what the client still sends for a
  moment so that it sees the answer.

Nothing here is eventlet-specific in spirit; another runtime applies the same
:class:`~workers.limits.HttpLimits` with its own server's hooks.
"""
from __future__ import annotations

import logging
import os
import socket

import eventlet
from eventlet import wsgi

from ..limits import LINGER, LINGER_LIMIT, HttpLimits, body_refusal, refusal_line

log = logging.getLogger("sticky_cluster.worker")


class HeaderTimeout(Exception):
    """The request line and headers did not arrive within ``header_timeout``."""


class GuardedProtocol(wsgi.HttpProtocol):
    """``eventlet.wsgi.HttpProtocol`` with timeouts and the 413; use :func:`protocol_for`."""

    limits: HttpLimits
    _served = False
    _header_timer: eventlet.Timeout | None = None

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except HeaderTimeout:
            log.debug("worker %d: %s sent no complete request within %.3g s", os.getpid(),
                      self.client_address, self.limits.header_timeout)
            self.close_connection = 1
        finally:
            self._stop_header_timer()

    def _read_request_line(self) -> bytes | str:
        if self.rfile.closed:
            return super()._read_request_line()
        self.connection.settimeout(None)
        if self._served and not self._next_request_within(self.limits.keepalive_timeout):
            return ""
        self._served = True
        self._header_timer = eventlet.Timeout(self.limits.header_timeout, HeaderTimeout)
        return super()._read_request_line()

    def get_environ(self) -> dict:
        self._stop_header_timer()
        environ = super().get_environ()
        environ["SERVER_PROTOCOL"] = self.request_version  # eventlet always says HTTP/1.0
        # environ's copy of the header: a dict look-up, where self.headers scans every header
        if environ.get("HTTP_UPGRADE", "").lower() != "websocket":
            self.connection.settimeout(self.limits.header_timeout)
        return environ

    def handle_one_response(self) -> None:
        if self.command == "POST":  # only a POST's body is refused: no header look-ups else
            refusal = body_refusal(self.command, self.path, self.headers.get("content-length"),
                                   self.headers.get("transfer-encoding"), self.limits)
            if refusal is not None:
                self._refuse_body(refusal)
                return
        super().handle_one_response()

    def _next_request_within(self, seconds: float) -> bool:
        """Wait until the next request's first byte is there; False on timeout or EOF."""
        data = b""
        try:
            with eventlet.Timeout(seconds, False):
                data = self.rfile.peek(1)
        except OSError:
            return False
        return bool(data)

    def _stop_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _refuse_body(self, answer: bytes) -> None:
        """Send ``answer``, then read and drop what the client still sends for a moment
        (:data:`~workers.limits.LINGER` seconds, :data:`~workers.limits.LINGER_LIMIT`
        bytes at most), so that it reads the answer instead of a reset."""
        log.info(refusal_line(self.headers.get("content-length"), self.client_address,
                              self.limits, answer))
        self.close_connection = 1
        try:
            self.wfile.write(answer)
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_WR)
            dropped = 0
            with eventlet.Timeout(LINGER, False):
                while dropped < LINGER_LIMIT:
                    data = self.connection.recv(65536)
                    if not data:
                        break
                    dropped += len(data)
                    eventlet.sleep(0)  # a recv with data there does not yield
        except OSError:
            pass


def protocol_for(limits: HttpLimits) -> type[GuardedProtocol]:
    """The protocol class to pass to ``eventlet.wsgi.server(protocol=...)``."""
    return type("GuardedProtocol", (GuardedProtocol,), {"limits": limits})
