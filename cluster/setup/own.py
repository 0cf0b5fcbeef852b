"""sticky-cluster's own packages, whatever the working directory or sys.path holds.

sticky-cluster is two top-level packages (:data:`PACKAGES`): ``cluster`` (the master, and
``cluster.protocol``, what it shares with the workers) and ``workers``: short names that an
app may well use for modules of its own. Python takes a module from the first sys.path
entry that has it, and the working directory (or a script's directory) comes first, so a
``workers.py`` beside the app would be run instead of ours. Hence:

- the master's start-up check imports ours from where they are (:data:`ROOT`), then puts
  the working directory back for the app (:data:`CHECK_BOOTSTRAP`);
- importing ``cluster`` imports ``workers`` from beside it (:func:`import_ours`), before
  anything imports it by name.
  ``cluster`` has no import statement for ``workers`` (the import graph keeps the master
  and the workers apart): this by-path import is what keeps an app's ``workers`` out, since
  the forked child imports its runtime by name (:data:`cluster.protocol.spec.RUNTIMES`). The
  workers, forked from the master, hold all three already, so the app's own never replace
  them;
- :func:`shadows` finds the app's modules that share a name with ours, for the one line
  the master logs before it forks any worker (an app that imports such a module by that
  name gets ours).

Not covered, since Python picks the file before any of our code runs: ``python -m cluster``
started in a directory that holds a ``cluster.py``. The ``sticky-cluster`` command is safe.
"""
from __future__ import annotations

import ast
import importlib
import importlib.machinery
import os
import sys
from pathlib import Path
from types import ModuleType

from cluster.protocol import PACKAGES

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
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


SCAN_LIMIT = 2000
"""The most of the app's Python files :func:`imports_of_shadows` reads (a bound on start-up)."""

_NOT_THE_APPS = {".git", ".venv", "venv", "env", "node_modules", "site-packages", "__pycache__"}


def imports_of_shadows(shadowed: list[tuple[str, str]]) -> list[tuple[str, int, str, str]]:
    """(file, line, name, module file) of each absolute import of a shadowing module.

    ``shadowed`` is what :func:`shadows` found. The files read are the Python files of the
    directory that holds each shadowing module (the app's), its virtualenvs and caches
    left out, :data:`SCAN_LIMIT` at most; they are parsed, never run. Such an import would
    get our package instead of the app's module.
    """
    found = []
    for name, module_file in shadowed:
        module_path = Path(module_file)
        home = module_path.parent.parent if module_path.name == "__init__.py" else module_path.parent
        for path in _python_files(home):
            for line in _absolute_imports_of(path, name):
                found.append((str(path), line, name, module_file))
    return found


def _python_files(home: Path) -> list[Path]:
    """The Python files under ``home`` (not in virtualenvs or caches), at most :data:`SCAN_LIMIT`."""
    files: list[Path] = []
    for folder, subfolders, names in os.walk(home):
        subfolders[:] = sorted(d for d in subfolders if d not in _NOT_THE_APPS and not d.startswith("."))
        files += [Path(folder, name) for name in sorted(names) if name.endswith(".py")]
        if len(files) >= SCAN_LIMIT:
            return files[:SCAN_LIMIT]
    return files


def _absolute_imports_of(path: Path, name: str) -> list[int]:
    """The lines of ``path`` that import the top-level module ``name`` absolutely."""
    try:
        tree = ast.parse(path.read_bytes(), str(path))
    except (OSError, SyntaxError, ValueError):
        return []  # not ours to judge: the app's own check reports a broken file
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        if any(imported.split(".")[0] == name for imported in names):
            lines.append(node.lineno)
    return lines
