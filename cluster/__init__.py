"""sticky-cluster: python-socketio on several worker processes (eventlet, gevent, asyncio or
threading), sticky by client.

Embed it with :class:`Master`; run it with the ``sticky-cluster`` command.

This package is the master. It has no import statement for the workers (``workers/``):
what both sides share is in ``cluster/protocol/``, and a forked child imports its runtime by
module path (:data:`cluster.protocol.spec.RUNTIMES`). The workers import
``cluster.protocol`` and nothing else of this package, so importing it stays cheap: the
master's names below are loaded on first use. :mod:`cluster.setup.own` imports ``workers``
from beside this package first, so that an app's ``workers.py`` never replaces it.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .setup import own

own.import_ours()  # before anything imports them by name: ours, not an app's workers.py

if TYPE_CHECKING:
    from .setup.config import ConfigError
    from .master import ClusterError, Master

__all__ = ["ClusterError", "ConfigError", "Master"]

_LAZY = {"ClusterError": "master", "ConfigError": "setup.config", "Master": "master"}


def __getattr__(name: str) -> Any:
    """The master's public names, imported when first asked for (PEP 562)."""
    if name not in _LAZY:
        raise AttributeError(f"module 'cluster' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
