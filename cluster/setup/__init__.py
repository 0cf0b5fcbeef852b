"""Start-up: what the operator asked for, read and checked before anything runs.

The bottom of the master (above :mod:`cluster.protocol` only): every other part is built from
what this package reads, and it imports none of them.

- :mod:`cluster.setup.options`: the one table of options (flag, variable, default, help);
- :mod:`cluster.setup.config`: the settings made from them; :mod:`cluster.setup.config_file`,
  the ``--config`` file; :mod:`cluster.setup.hooks`, the user's server hooks;
  :mod:`cluster.setup.container`, what a container or platform says (``PORT``, the CPUs);
- :mod:`cluster.setup.preflight`: the checks before any fork (the app loads, the files can
  be written), with :mod:`cluster.setup.broker_check` (the broker answers) and
  :mod:`cluster.setup.own` (our packages, not an app's namesakes); :mod:`cluster.setup.reload`,
  the same check on each change under ``--reload``;
- the process itself: :mod:`cluster.setup.limits` (open files),
  :mod:`cluster.setup.privileges` (``--user``/``--group``), :mod:`cluster.setup.proctitle`
  (its title), :mod:`cluster.setup.logs` (its log lines).

Nothing is imported here: ``import cluster`` runs :mod:`cluster.setup.own` alone.
"""
