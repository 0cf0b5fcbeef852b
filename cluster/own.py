"""sticky-cluster's own packages, whatever the working directory or sys.path holds.

sticky-cluster is three top-level packages (:data:`PACKAGES`): ``cluster`` (the master),
``workers`` and ``protocol`` (what the two share): short names that an app may well use
for modules of its own. Python takes a module from the first sys.path entry that has it,
and the working directory (or a script's directory) comes first, so a ``workers.py`` or a
``protocol.py`` beside the app would be run instead of ours. Hence:

- the master's start-up check imports ours from where they are (:data:`ROOT`), then puts
  the working directory back for the app (:data:`CHECK_BOOTSTRAP`);
- importing this module imports ``protocol`` from beside it, and ``cluster`` then imports
  ``workers`` the same way (:func:`import_ours`), before anything imports them by name.
  ``cluster`` has no import statement for ``workers`` (the import graph keeps the master
  and the workers apart): this by-path import is what keeps an app's ``workers`` out, since
  the forked child imports its runtime by name (:data:`protocol.spec.RUNTIMES`). The
  workers, forked from the master, hold all three already, so the app's own never replace
  them;
- :func:`shadows` finds the app's modules that share a name with ours, for the one line
  the master logs before it forks any worker (an app that imports such a module by that
  name gets ours).

Not covered, since Python picks the file before any of our code runs: ``python -m cluster``
started in a directory that holds a ``cluster.py``. The ``sticky-cluster`` command is safe.
"""
from __future__ import annotations

import importlib
import importlib.machinery
import os
import sys
from types import ModuleType

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
"""The directory that holds our packages."""

CHECK_BOOTSTRAP = ("import sys; root = sys.argv.pop(1); sys.path.insert(0, root); "
                   "import cluster, workers.__main__ as check; sys.path.remove(root); "
                   "sys.exit(check.main(sys.argv[1:]))")
"""``python -c`` code for the start-up check: ``CHECK_BOOTSTRAP ROOT RUNTIME TARGET``."""


def is_ours(path: str | None, name: str) -> bool:
    """Whether the file ``path`` belongs to our package ``name``."""
    if not path:
        return False
    package = os.path.realpath(os.path.join(ROOT, name))
    return os.path.realpath(path).startswith(package + os.sep)


def _import_ours(name: str) -> ModuleType:
    """Import our package ``name``, not a module of that name that sys.path finds first.

    Raises ImportError, naming the file, if another ``name`` was imported already.
    """
    loaded = sys.modules.get(name)
    if loaded is None:
        sys.path.insert(0, ROOT)
        try:
            importlib.import_module(name)
        finally:
            sys.path.remove(ROOT)
        loaded = sys.modules[name]
    if not is_ours(getattr(loaded, "__file__", None), name):
        raise ImportError(f"{getattr(loaded, '__file__', loaded)!s} was imported as {name!r}, "
                          "the name of sticky-cluster's own package: rename it")
    return loaded


PACKAGES: tuple[str, ...] = _import_ours("protocol").PACKAGES
"""Our top-level package names (:data:`protocol.PACKAGES`: ``protocol`` comes first, since
it names them)."""


def import_ours() -> None:
    """Import each of our packages from :data:`ROOT` (see :func:`_import_ours`)."""
    for name in PACKAGES:
        _import_ours(name)


def shadows(search_path: list[str]) -> list[tuple[str, str]]:
    """(name, file) of each module named like ours that ``search_path`` finds before ours.

    An empty entry stands for the working directory, as on sys.path.
    """
    found = []
    for name in PACKAGES:
        for entry in search_path:
            spec = importlib.machinery.PathFinder.find_spec(name, [entry or os.getcwd()])
            if spec is None or spec.origin is None:  # nothing, or a bare directory
                continue
            if not is_ours(spec.origin, name):
                found.append((name, spec.origin))
            break
    return found
