"""The workers: their processes, their states and how they are replaced.

Above :mod:`cluster.setup` (it forks with the settings and calls the user's hooks); it
knows nothing of client connections (:mod:`cluster.intake`) nor of the operators' face.

- :mod:`cluster.pool.pool`: the one owner of the master's table of workers and its state
  machine (reconcile, heartbeats, drain, scale);
- :mod:`cluster.pool.worker`: one worker as the master sees it (its socket pair, its outbox);
- :mod:`cluster.pool.supervisor`: fork and reap; :mod:`cluster.pool.pool_wiring`, what the
  pool is wired to (the master's hooks, a selector, a process starter: fakes in tests);
- :mod:`cluster.pool.roll`, :mod:`cluster.pool.backoff`, :mod:`cluster.pool.recycle`: when a
  worker is replaced (a rolling restart, a crash, its memory or age), pure decisions.
"""
