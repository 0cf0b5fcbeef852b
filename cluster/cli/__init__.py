"""The ``sticky-cluster`` command: run a master, or act on a running one.

The top of the master's layers: :mod:`cluster.cli.cli` (the click commands) starts a
:class:`cluster.master.Master`; :mod:`cluster.cli.control_client` (the control socket) and
:mod:`cluster.cli.control` (signals through the ``--pid`` file) reach one that runs.
"""
