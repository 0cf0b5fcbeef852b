"""The worker side of sticky-cluster: what runs in each forked worker process.

The master reaches a worker runtime only through :func:`runtime`, by name, and imports
the runtime's module only in the forked child. A runtime module provides
``serve(spec, channel)`` (never returns) and ``check(target)`` (returns an error line
or None). Which runtime a target needs is decided by :mod:`workers.loader`; the
master learns it from ``python -m workers auto TARGET`` before it forks.
"""
from __future__ import annotations

import importlib
from types import ModuleType

RUNTIMES = {
    "eventlet": "workers.eventlet_runtime",
    "gevent": "workers.gevent_runtime",
    "asyncio": "workers.asyncio_runtime",
}
"""Worker runtime name -> module that implements it."""

AUTO = "auto"
"""The worker class that means: the one the target needs."""


def runtime(name: str) -> ModuleType:
    """Import and return the module of the worker runtime called ``name``."""
    return importlib.import_module(RUNTIMES[name])
