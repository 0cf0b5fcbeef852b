"""The threading worker runtime: ``socketio.Server(async_mode="threading")``, Flask-SocketIO
in threading mode, or a ``socketio.WSGIApp`` over such a Server.

The shared boot sequence (:mod:`workers.boot`), with no monkey-patching: the app runs on
real threads, as under ``gunicorn -k gthread``, with python-socketio's sync managers, whose
listeners are threads. The server (:mod:`workers.threading.server`) reads the handed-over
sockets with one poller thread and runs requests on ``--threads`` threads; a websocket is
read by the request thread that waits for its messages (:mod:`workers.threading.websocket`),
and python-socketio's and python-engineio's background tasks (one per event the app
handles) run on reused threads (:mod:`workers.threading.tasks`); Engine.IO's pings are
timers of the poller (:mod:`workers.threading.timers`). The poller also sends the
heartbeats: a worker whose poller is stuck, or whose interpreter is held by code that keeps
the GIL, is seen and killed; one whose threads are all busy is reported *full*.
"""
from __future__ import annotations

import logging
import os
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, Callable

from cluster.protocol.frames import Heartbeat
from cluster.protocol.spec import WorkerSpec

from ..boot import BlockingRuntime

if TYPE_CHECKING:
    from .link import ThreadMasterLink

log = logging.getLogger("sticky_cluster.worker")

DEFAULT_THREADS = 1000
"""``--threads`` when not given. A websocket holds one pool thread for its whole life
(Engine.IO adds a task of its own, its writer: :mod:`.tasks`; its pings are the poller's
timers, :mod:`.timers`), so the
pool is the most clients one worker serves at once: gunicorn's documented 100 would cap
a worker at 100 websockets. A long poll or a short request frees its thread when it
ends."""


SWITCH_INTERVAL = 0.05
"""Seconds a thread may hold the GIL while another waits for it (``sys.setswitchinterval``;
Python's default is 0.005). Each thread that waits for the GIL wakes every interval to ask
for it; with 1,000 websockets, thousands of threads wait at once, and at 5 ms their
wake-ups took the worker's CPU in the kernel: one worker echoed 1.5 messages/s to 1,000
clients, and 1,700-2,800/s at 20-100 ms (measured, echo 1,000 on one worker; 100 clients
on two workers: 4,500-4,650 messages/s at 5 ms, 5,150-5,800 at 50 ms). The worker's
threads block on sockets and locks long before 50 ms; only code that computes that long
without a pause keeps the others waiting, as it would keep every client of an eventlet or
gevent worker waiting for all of its run."""


class ThreadingRuntime(BlockingRuntime):
    """A poller thread over the hand-offs, a pool of ``--threads`` threads for the requests."""

    name = "threading"
    warm_modules = ("engineio.async_drivers.threading", "workers.wsgi_errors",
                    "workers.threading.link", "workers.threading.server",
                    "workers.threading.tasks", "workers.threading.websocket")

    def open(self) -> ThreadMasterLink:
        """Bound the websockets; make the server and the link that feeds it."""
        import engineio.socket

        from .. import access_log, forwarded, pings
        from ..limits import http_limits
        from ..wsgi_errors import log_errors
        from . import tasks, websocket
        from .link import ThreadMasterLink
        from .server import Server

        spec, app = self.spec, self.app
        sys.setswitchinterval(SWITCH_INTERVAL)
        websocket.install(app.server.eio, spec.websocket_rate, spec.websocket_deflate)
        tasks.install(app.server.eio)
        threads = spec.threads or DEFAULT_THREADS
        trusted = forwarded.trust_of(spec.forwarded_allow_ips)
        wsgi = app.wsgi if trusted is None else forwarded.wsgi_app(app.wsgi, trusted)
        self.server = Server(access_log.wrap(log_errors(wsgi), spec), http_limits(spec, app),
                             threads, _base_environ(spec), spec.owner)
        pings.install(engineio.socket.Socket, self.server.timers.call_later, pings.through_send)
        link = ThreadMasterLink(self.sock, self.server.add)
        if spec.hand_back:
            self.server.hand_back = link.hand_back
            self.server.place_new_sessions = spec.place_new_sessions
        self.drained = threading.Event()
        log.debug("worker %d runs requests on %d threads", os.getpid(), threads)
        return link

    def load(self) -> Heartbeat:
        """The sessions, the connections, and whether every thread of the pool is busy."""
        return Heartbeat(len(self.app.server.eio.sockets), self.server.connections,
                         int(self.server.pool.full))

    def busy(self) -> bool:
        """A request runs in the pool or waits for a thread."""
        return bool(self.server.pool.busy or self.server.pool.waiting)

    def start_heartbeats(self) -> None:
        """Nothing to start: the poller beats (:meth:`wait`), so that a stuck poller, or
        code that holds the GIL, stops the heartbeats."""

    def spawn(self, function: Callable[[], Any], name: str) -> None:
        """Run ``function`` in a daemon thread named ``sticky-NAME``."""
        threading.Thread(target=function, name=f"sticky-{name}", daemon=True).start()

    def sleep(self, seconds: float) -> None:
        """Sleep in this thread."""
        time.sleep(seconds)

    def wait(self) -> None:
        """Run the poller (it beats every ``heartbeat_interval``) until the end of the
        drain, then close the connections left idle."""
        self.server.run(self.beat, self.spec.heartbeat_interval, stop=self.drained.is_set)
        self.server.close_idle()

    def stop(self) -> None:
        """End :meth:`wait`."""
        self.drained.set()


def _base_environ(spec: WorkerSpec) -> dict[str, Any]:
    """The WSGI keys every request of this worker shares."""
    address = spec.server_address
    name, port = (str(address[0]), str(address[1])) if isinstance(address, tuple) else ("", "")
    return {"SERVER_NAME": name, "SERVER_PORT": port, "SERVER_SOFTWARE": "sticky-cluster",
            "wsgi.version": (1, 0), "wsgi.url_scheme": "http", "wsgi.multithread": True,
            "wsgi.multiprocess": True, "wsgi.run_once": False, "wsgi.input_terminated": True}
