"""The import graph: the master and the workers meet only in the protocol package.

``cluster/`` (the master) and ``workers/`` (the forked workers) both import
``cluster/protocol/``: the workers import nothing else of ``cluster``, the master nothing of
``workers``; ``cluster/protocol/`` imports the standard library only. The forked child reaches its runtime by the module path in
:data:`cluster.protocol.spec.RUNTIMES`, not by an import statement. Every ``import`` statement
counts, inside a function or under ``TYPE_CHECKING`` too: the files are read with
:mod:`ast`, nothing is imported.
"""
from __future__ import annotations

import ast
import configparser
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("cluster", "workers")
PROTOCOL = "cluster.protocol"


def imports_of(source: str, package: tuple[str, ...]) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import statement in ``source``.

    ``package`` is the dotted path of the package the module is in (for relative imports).
    """
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package[:len(package) - node.level + 1])
                name = f"{base}.{node.module}" if node.module else base
            else:
                name = node.module or ""
            found.append((node.lineno, name))
    return found


def imports_in(package: str, skip: str | None = None) -> list[tuple[str, str]]:
    """("file:line", module imported) for every import in every module of ``package``
    (a dotted path), but those of the subpackage ``skip``."""
    folder = ROOT.joinpath(*package.split("."))
    modules = sorted(path for path in folder.rglob("*.py")
                     if skip is None or not path.is_relative_to(ROOT.joinpath(*skip.split("."))))
    assert modules, f"no modules in {package}"
    return [(f"{path.relative_to(ROOT)}:{line}", name)
            for path in modules
            for line, name in imports_of(path.read_text(), path.relative_to(ROOT).parts[:-1])]


def test_every_import_statement_counts() -> None:
    source = ("import os, workers.spec\n"
              "from . import own\n"
              "from ..protocol.frames import Kind\n"
              "if TYPE_CHECKING:\n"
              "    from .spec import WorkerSpec\n"
              "def late():\n"
              "    from cluster import limits\n")
    assert sorted(imports_of(source, ("workers", "sub"))) == [
        (1, "os"), (1, "workers.spec"), (2, "workers.sub"), (3, "workers.protocol.frames"),
        (5, "workers.sub.spec"), (7, "cluster")]


def test_protocol_imports_the_standard_library_only() -> None:
    outside = [(where, name) for where, name in imports_in(PROTOCOL)
               if name.split(".")[0] not in sys.stdlib_module_names
               and not (name + ".").startswith(PROTOCOL + ".")]
    assert outside == []


def test_the_workers_import_nothing_of_the_master_but_the_protocol() -> None:
    assert [(where, name) for where, name in imports_in("workers")
            if name.split(".")[0] == "cluster" and not (name + ".").startswith(PROTOCOL + ".")] == []


def test_the_master_never_imports_the_workers() -> None:
    assert [(where, name) for where, name in imports_in("cluster", skip=PROTOCOL)
            if name.split(".")[0] == "workers"] == []


def test_importing_the_protocol_does_not_load_the_master() -> None:
    """A worker's ``import cluster.protocol`` runs ``cluster/__init__.py``: it must stay lazy."""
    code = ("import sys, cluster.protocol.frames; "
            "print(sorted(m for m in sys.modules if m.startswith('cluster')))")
    loaded = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout
    assert "cluster.master" not in loaded and "cluster.setup.config" not in loaded, loaded


def test_the_packages_shipped_are_the_ones_guarded() -> None:
    """setup.cfg ships exactly our packages, and ``own`` guards each against an app's namesake."""
    from cluster.setup import own

    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    shipped = set(config["options"]["packages"].replace(",", " ").split())
    assert {name for name in shipped if "." not in name} == set(own.PACKAGES) == set(PACKAGES)
    assert PROTOCOL in shipped


def _functions_of(module: str) -> set[str]:
    """The functions ``module`` defines at its top level (found, read, not run)."""
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin, f"no module {module}"
    source = Path(spec.origin).read_text()
    return {node.name for node in ast.parse(source).body if isinstance(node, ast.FunctionDef)}


def test_the_module_paths_in_the_protocol_name_modules_with_what_the_master_calls() -> None:
    """A module path is a string, not an import: a typo here would surface only in a worker."""
    from cluster.protocol.spec import LOADER, RUNTIMES

    for module in RUNTIMES.values():
        assert {"serve", "check"} <= _functions_of(module), module
    assert "load" in _functions_of(LOADER)
