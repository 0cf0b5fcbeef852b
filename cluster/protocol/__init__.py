"""The protocol between the master (``cluster/``) and its workers (``workers/``).

Both sides import this package and it imports neither (the workers import nothing else
of ``cluster``), nor anything outside the standard library
(``tests/unit/test_import_graph.py`` checks it): whatever the two sides must agree on lives
here, one module per concern.

- :mod:`cluster.protocol.frames`: the messages over each worker's socket pair (kinds, framing
  and reassembly, the hand-off and resume packets, the validated parsers of what a
  worker sends);
- :mod:`cluster.protocol.sids`: the session ids that carry their worker's tag, the tag space,
  and the sid of a request line;
- :mod:`cluster.protocol.spec`: what the master tells a worker it forks (:class:`WorkerSpec`),
  the worker runtimes by module path;
- :mod:`cluster.protocol.access_log_format`: what ``--access-log-format`` may say;
- :mod:`cluster.protocol.adapters`: the broker URLs ``--adapter`` accepts and their families;
- :mod:`cluster.protocol.trust`: which peers are trusted proxies (``--forwarded-allow-ips``,
  ``--proxy-allow-from``).
"""

PACKAGES = ("cluster", "workers")
"""sticky-cluster's top-level packages: short names an app may use for modules of its own
(``cluster.setup.own`` imports ours first and refuses an app that imports its own module of such a
name; ``workers.loader`` refuses a target named like one)."""
