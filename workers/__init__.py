"""The worker side of sticky-cluster: what runs in each forked worker process.

The master reaches a worker runtime only through :func:`runtime`, by name, and imports
the runtime's module only in the forked child. A runtime module provides
``serve(spec, channel)`` (never returns) and ``check(target)`` (returns an error line
or None). Eventlet is the only runtime today; an asyncio one can be added here without
touching the master.
"""
from __future__ import annotations

import importlib
from types import ModuleType

RUNTIMES = {"eventlet": "workers.eventlet_runtime"}
"""Worker runtime name -> module that implements it."""


def runtime(name: str) -> ModuleType:
    """Import and return the module of the worker runtime called ``name``."""
    return importlib.import_module(RUNTIMES[name])
