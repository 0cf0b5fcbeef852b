"""The operators' face: what the master tells them and how they act on it, off the data path.

Above the parts it reports on (:mod:`cluster.pool`, :mod:`cluster.intake`,
:mod:`cluster.relay`), which it reads and never changes; it acts on the master only
through what the master hands it (:class:`cluster.ops.control_socket.Controlled`), so it
never imports the master.

- :mod:`cluster.ops.status`: the master's facts, its status file and systemd's status line;
- :mod:`cluster.ops.status_http`, :mod:`cluster.ops.status_site` (with ``status_page.html``),
  :mod:`cluster.ops.metrics`: the status endpoint (``/``, ``/status``, ``/metrics``,
  ``/healthz``); :mod:`cluster.ops.events`, the last lifecycle events it shows;
- :mod:`cluster.ops.control_socket`: ``status``, ``scale``, ``reload``, ``stop`` on a Unix
  socket; both servers run on the loop through :mod:`cluster.ops.selector_server`;
- :mod:`cluster.ops.systemd`: readiness notification and socket activation;
  :mod:`cluster.ops.pidfile`: the ``--pid`` file and its status file.
"""
