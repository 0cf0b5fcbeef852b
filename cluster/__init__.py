"""sticky-cluster: python-socketio on several worker processes (eventlet, gevent or asyncio), sticky by client.

Embed it with :class:`Master`; run it with the ``sticky-cluster`` command.
"""
from . import own

own.import_workers()  # before anything imports it by name: ours, not a workers.py of the app

from .config import ConfigError  # noqa: E402
from .master import ClusterError, Master  # noqa: E402

__all__ = ["ClusterError", "ConfigError", "Master"]
