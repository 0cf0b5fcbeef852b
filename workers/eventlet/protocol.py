"""eventlet.wsgi's connection handler, taught to give back the requests it does not own.

:class:`RoutingProtocol` is ``eventlet.wsgi.HttpProtocol`` with two changes:

* its ``rfile`` reads through a :class:`~workers.replay.ReplayReader`: first the bytes a resumed
  connection came with (the worker that handed it back had read them), then the
  socket, so eventlet parses them exactly as if it had read them itself;
* after it reads each request line it asks :func:`workers.handback.goes_back`;
  a request for another worker's sid (or, after a connection's first request, one that
  starts a session, for the master to place) goes back to the master with the line and
  what the reader holds behind it (taken without waiting), and the connection is
  forgotten here: no answer, no shutdown (the master and then the owner hold the socket).

The first request of a resumed connection is served here whatever it names, so a
connection cannot bounce between workers (see :mod:`workers.handback`).
"""
from __future__ import annotations

import io
import socket
from typing import Callable

from eventlet import wsgi

from cluster.protocol.frames import RESUME_LIMIT

from ..handback import goes_back
from ..replay import READ_BUFFER, ReplayReader, buffered
from .link import PREFACE_ATTRIBUTE

HandBack = Callable[[socket.socket, tuple[str, int], bytes], None]


class RoutingProtocol(wsgi.HttpProtocol):
    """``HttpProtocol`` that hands a request for another worker's session back to the master.

    Made by :func:`routing_protocol`, which sets :attr:`own_tag`, :attr:`hand_back` and
    :attr:`place_new_sessions`.
    """

    own_tag = 0
    """The tag of this worker (the one its sids carry)."""
    place_new_sessions = False
    """Whether a later request of a connection that starts a session goes back to the master."""
    hand_back: HandBack
    """Sends a client socket, its address and the bytes read from it to the master."""

    def setup(self) -> None:
        conn = self.connection = self.request
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, True)
        except (AttributeError, OSError):  # a Unix socket, or not Linux
            pass
        preface = conn.__dict__.pop(PREFACE_ATTRIBUTE, b"")
        self._serve_next_here = bool(preface)
        self._first_request = True
        self._handed_back = False
        self._reader = ReplayReader(conn, conn.fd, preface)  # fd: the green socket's own
        self.rfile = io.BufferedReader(self._reader, READ_BUFFER)
        self.wfile = conn.makefile("wb", self.wbufsize)

    def _read_request_line(self):  # type: ignore[no-untyped-def]
        line = super()._read_request_line()
        first, self._first_request = self._first_request, False
        if self._serve_next_here or not line:
            self._serve_next_here = False
            return line
        if not goes_back(line, self.own_tag, self.place_new_sessions and not first):
            return line
        data = line + buffered(self.rfile, self._reader)
        if len(data) > RESUME_LIMIT:  # cannot happen with READ_BUFFER; answered here then
            return line
        self._handed_back = True
        self.hand_back(self.connection, self.client_address, data)
        return ""  # eventlet ends the connection: see finish()

    def finish(self) -> None:
        if not self._handed_back:
            super().finish()
            return
        self.wfile.close()  # nothing was written
        self.rfile.close()
        self.connection.close()  # no shutdown: the connection lives on in another worker


def routing_protocol(own_tag: int, hand_back: HandBack,
                     base: type[wsgi.HttpProtocol] = wsgi.HttpProtocol,
                     place_new_sessions: bool = False) -> type[RoutingProtocol]:
    """A :class:`RoutingProtocol` class for the worker tagged ``own_tag``, on top of
    ``base`` (another ``HttpProtocol`` subclass, such as the one with the worker's limits);
    ``place_new_sessions``: hand back a kept-alive connection's handshakes too."""
    return type("RoutingProtocol", (RoutingProtocol, base), {
        "own_tag": own_tag, "hand_back": staticmethod(hand_back),
        "place_new_sessions": place_new_sessions})
