"""gevent.pywsgi's connection handler, taught to give back the requests it does not own.

The gevent twin of :mod:`workers.eventlet.protocol`. :class:`RoutingHandler` goes on top
of the handler class the worker serves with (pywsgi's own, or gevent-websocket's):

* its ``rfile`` reads through a :class:`~workers.replay.ReplayReader`: first the bytes
  a resumed connection came with, then the socket;
* after it reads each request line it asks :func:`workers.handback.goes_back`;
  a request for another worker's sid (or, after a connection's first request, one that
  starts a session, for the master to place) goes back to the master with the line and
  what the reader holds behind it (taken without waiting), and the connection is
  forgotten here: no answer, no read-out, no shutdown (the master and then the owner
  hold it).

The first request of a resumed connection is served here whatever it names, so a
connection cannot bounce between workers (see :mod:`workers.handback`).
"""
from __future__ import annotations

import io
import socket
from typing import Any, Callable

from gevent import pywsgi

from cluster.protocol.frames import RESUME_LIMIT

from ..handback import goes_back
from ..replay import READ_BUFFER, ReplayReader, buffered

HandBack = Callable[[socket.socket, tuple[str, int], bytes], None]


class RoutingHandler(pywsgi.WSGIHandler):
    """A ``WSGIHandler`` that hands a request for another worker's session back to the master.

    Made by :func:`routing_handler`, which sets :attr:`own_tag`, :attr:`hand_back` and
    :attr:`place_new_sessions`.

    :param preface: the bytes a resumed connection came with, served first.
    """

    own_tag = 0
    """The tag of this worker (the one its sids carry)."""
    place_new_sessions = False
    """Whether a later request of a connection that starts a session goes back to the master."""
    hand_back: HandBack
    """Sends a client socket, its address and the bytes read from it to the master."""

    def __init__(self, sock: Any, address: Any, server: Any, preface: bytes = b"") -> None:
        self._reader = ReplayReader(sock, sock._sock, preface)  # _sock: the real socket under it
        self._serve_next_here = bool(preface)
        self._first_request = True
        super().__init__(sock, address, server, rfile=io.BufferedReader(self._reader, READ_BUFFER))

    def read_requestline(self) -> str:
        line = super().read_requestline()
        first, self._first_request = self._first_request, False
        if self._serve_next_here or not line:
            self._serve_next_here = False
            return line
        raw = line.encode("latin-1")
        if not goes_back(raw, self.own_tag, self.place_new_sessions and not first):
            return line
        data = raw + buffered(self.rfile, self._reader)
        if len(data) > RESUME_LIMIT:  # cannot happen with READ_BUFFER; answered here then
            return line
        self.hand_back(self.socket, self.client_address, data)
        self.socket.close()  # no shutdown: the connection lives on in another worker
        self.socket = None  # pywsgi then neither answers nor reads the socket out
        return ""


def routing_handler(own_tag: int, hand_back: HandBack,
                    base: type[pywsgi.WSGIHandler] = pywsgi.WSGIHandler,
                    place_new_sessions: bool = False) -> type[RoutingHandler]:
    """A :class:`RoutingHandler` class for the worker tagged ``own_tag``, on top of ``base``
    (pywsgi's handler or a subclass, such as gevent-websocket's); ``place_new_sessions``:
    hand back a kept-alive connection's handshakes too."""
    return type("RoutingHandler", (RoutingHandler, base), {
        "own_tag": own_tag, "hand_back": staticmethod(hand_back),
        "place_new_sessions": place_new_sessions})
