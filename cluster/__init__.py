"""sticky-cluster: python-socketio on several worker processes (eventlet, gevent or asyncio), sticky by client.

Embed it with :class:`Master`; run it with the ``sticky-cluster`` command.

This package is the master. It has no import statement for the workers (``workers/``):
what both sides share is in ``protocol/``, and a forked child imports its runtime by
module path (:data:`protocol.spec.RUNTIMES`). :mod:`cluster.own` imports our packages
from beside this one first, so that an app's ``protocol.py`` or ``workers.py`` never
replaces them.
"""
from . import own

own.import_ours()  # before anything imports them by name: ours, not an app's workers.py

from .config import ConfigError  # noqa: E402
from .master import ClusterError, Master  # noqa: E402

__all__ = ["ClusterError", "ConfigError", "Master"]
