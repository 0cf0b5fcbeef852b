"""What one client may make a worker wait for, hold or do: the pure decisions, no I/O.

Every runtime (eventlet today, asyncio and gevent next) applies the same limits, so the
decisions live here and each runtime's server only calls them:

- :class:`HttpLimits`: how long a connection may take to send its request headers,
  how long it may sit idle between two keep-alive requests, and how large an Engine.IO
  POST body may be (python-socketio's ``max_http_buffer_size``). Websockets are not
  timed here: Engine.IO pings them.
- :func:`body_refusal`: a POST to the Engine.IO path whose declared body is over the
  limit is answered ``413`` before anything reads it (python-engineio would wait
  forever on a session that nobody polls, see issue 8 item 8), one without a length
  ``411``.
- :class:`ReceiveBudget`: a token bucket on the bytes one websocket may feed the worker
  per second; past it the worker stops reading that socket for a while and TCP slows
  the sender down, so one client cannot take the worker's CPU from the others;
  :class:`Pacer` adds that a reader yields every :data:`QUANTUM` of its work.
- the sizes of a request head (:data:`REQUEST_LINE_LIMIT`, :data:`HEADER_LINE_LIMIT`,
  :data:`HEAD_LIMIT`), and the answers that refuse a request (413, 411, 503).
"""
from __future__ import annotations

import dataclasses
import os
import time
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from .loader import App
    from cluster.protocol.spec import WorkerSpec

RESPONSE_413 = (b"HTTP/1.1 413 Payload Too Large\r\n"
                b"Content-Type: text/plain\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
"""The whole answer to a body over the limit: no detail, and the connection closes."""
RESPONSE_411 = (b"HTTP/1.1 411 Length Required\r\n"
                b"Content-Type: text/plain\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
"""The answer to an Engine.IO POST without a length (chunked): its size cannot be checked,
python-engineio would not read it, and the server would drain it for as long as it came."""

RESPONSE_503 = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n"
                b"content-length: 19\r\nconnection: close\r\n\r\nService Unavailable")
"""The answer to a connection past ``--worker-connections`` (the words uvicorn's 503 uses)."""
LINGER = 2.0
"""Seconds a refused request's body is read and dropped before the connection closes
(so that the client, still sending, reads the answer instead of a reset)."""
LINGER_LIMIT = 16_000_000
"""Bytes read and dropped at most while lingering."""
REFUSAL_WAIT = 10.0
"""Seconds a refused connection may take to send its request head before it is closed."""

REQUEST_LINE_LIMIT = 8192
"""Longest request line a worker reads (eventlet.wsgi's and gevent.pywsgi's own limit): ``414``."""
HEADER_LINE_LIMIT = 8192
"""Longest header line a worker reads (eventlet.wsgi's own limit): ``400``."""
HEAD_LIMIT = 65536
"""Most bytes of header lines a request may have (eventlet.wsgi's own limit): ``400``."""

QUANTUM = 0.005
"""Seconds one websocket's reader may run on without letting the other clients in."""

FRAME_COST = 16384
"""Bytes a websocket frame is charged besides its payload: the work a frame costs
(parsing, dispatch to the app) whatever its size, so tiny frames are budgeted too."""


@dataclasses.dataclass(frozen=True)
class HttpLimits:
    """The limits a worker's HTTP server applies to every connection.

    :param header_timeout: seconds a connection gets to send a complete request line
                           and headers, counted from its hand-off (or, on a
                           keep-alive connection, from the first byte of the request).
    :param keepalive_timeout: seconds a keep-alive connection may stay idle between
                              two requests.
    :param max_body: the most bytes an Engine.IO POST body may declare.
    :param engineio_path: the URL path the Engine.IO endpoint is served under.
    """

    header_timeout: float
    keepalive_timeout: float
    max_body: int
    engineio_path: str = "/socket.io/"


def http_limits(spec: "WorkerSpec", app: "App") -> HttpLimits:
    """The limits of a worker: the spec's timeouts, the app's Engine.IO path and body limit."""
    return HttpLimits(header_timeout=spec.header_timeout,
                      keepalive_timeout=spec.keepalive_timeout,
                      max_body=int(app.server.eio.max_http_buffer_size),
                      engineio_path=app.engineio_path)


def body_refusal(method: str, path: str, content_length: str | None,
                 transfer_encoding: str | None, limits: HttpLimits) -> bytes | None:
    """The answer that refuses an Engine.IO POST's body before it is read, or None.

    ``413`` when the declared length is over the limit, ``411`` when there is no length
    but a body (``Transfer-Encoding``); None for any other request.
    """
    if method != "POST" or not path.startswith(limits.engineio_path):
        return None
    if content_length is None:
        return RESPONSE_411 if transfer_encoding is not None else None
    try:
        return RESPONSE_413 if int(content_length) > limits.max_body else None
    except ValueError:
        return None  # the HTTP server answers 400 to a malformed Content-Length


def refusal_line(content_length: str | None, client: object, limits: HttpLimits,
                 answer: bytes) -> str:
    """The log line of a POST body refused with ``answer`` (from :func:`body_refusal`)."""
    peer = client[0] if isinstance(client, tuple) else client or "a local client"
    return (f"worker {os.getpid()}: refused a POST body of {content_length or 'unknown'} bytes "
            f"from {peer} (limit {limits.max_body}): {answer[9:12].decode()}")


class ReceiveBudget:
    """A token bucket of bytes: ``rate`` per second, at most ``burst`` saved up.

    :param rate: bytes per second the connection may send, on average.
    :param burst: bytes it may send at once after a quiet spell.
    :param clock: the monotonic clock (a parameter for the tests).
    """

    __slots__ = ("rate", "burst", "_clock", "_tokens", "_stamp")  # one per websocket

    def __init__(self, rate: float, burst: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or burst <= 0:
            raise ValueError("rate and burst must be more than 0")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = burst
        self._stamp = clock()

    def charge(self, amount: float, now: float | None = None) -> float:
        """Take ``amount`` bytes; return the seconds to wait before reading more (0 if none).

        ``now``: the clock's time, when the caller has just read it."""
        if now is None:
            now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate) - amount
        self._stamp = now
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate


class Pacer:
    """When a websocket's reader must pause: past its :class:`ReceiveBudget`, for as long
    as the budget says; below it, for a bare yield once it has run :data:`QUANTUM`
    seconds without one (a green or threaded ``recv`` does not yield while data is
    there, so one busy client would hold the worker).

    :param budget: the connection's receive budget.
    :param clock: the monotonic clock (a parameter for the tests).
    """

    __slots__ = ("budget", "_clock", "_resumed", "_last")  # one per websocket

    def __init__(self, budget: ReceiveBudget,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.budget = budget
        self._clock = clock
        self._resumed = self._last = clock()

    def charge(self, amount: float) -> float | None:
        """Take ``amount`` bytes; return the seconds to sleep (0: just yield), or None to go on.

        Charges more than :data:`QUANTUM` apart mean that the reader waited in between (its
        reads come far closer while data is there): the others had their turn, and a new
        quantum begins. (A reader that waits for every message, as most do, would
        otherwise yield for nothing on nearly every one: 2 % of an echo worker's samples.)
        """
        now = self._clock()
        if now - self._last > QUANTUM:
            self._resumed = now
        self._last = now
        wait = self.budget.charge(amount, now)
        if not wait and now - self._resumed <= QUANTUM:
            return None
        self._resumed = now + wait
        return wait
