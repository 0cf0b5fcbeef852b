"""sticky-cluster: python-socketio on several worker processes (eventlet, gevent or asyncio), sticky by client.

Embed it with :class:`Master`; run it with the ``sticky-cluster`` command.
"""
from .config import ConfigError
from .master import ClusterError, Master

__all__ = ["ClusterError", "ConfigError", "Master"]
