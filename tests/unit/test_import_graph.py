"""The import graph: the master and the workers meet only in the protocol package, and each
stands in layers, without a circle.

``cluster/`` (the master) and ``workers/`` (the forked workers) both import
``cluster/protocol/``: the workers import nothing else of ``cluster``, the master nothing of
``workers``; ``cluster/protocol/`` imports the standard library only. The forked child
reaches its runtime's class by its path in :data:`cluster.protocol.spec.RUNTIMES`, not by
an import statement. No module of either package imports itself back through others, and
inside ``cluster/`` no import runs up the layers of :data:`LAYERS`. Every ``import``
statement counts, inside a function or under ``TYPE_CHECKING`` too: the files are read with
:mod:`ast`, nothing is imported. What a fresh interpreter loads: tests/e2e/test_import_graph.py.
"""
from __future__ import annotations

import ast
import configparser
import graphlib
import importlib.util
import sys
from pathlib import Path

import pytest

from tests.support.paths import ROOT

PACKAGES = ("cluster", "workers")
PROTOCOL = "cluster.protocol"

LAYERS: tuple[tuple[str, ...], ...] = (
    ("cluster.protocol",),
    ("cluster.setup", "cluster.hosts.addresses"),
    ("cluster.hosts",),
    ("cluster.pool",),
    ("cluster.intake", "cluster.relay"),
    ("cluster.ops",),
    ("cluster.master", "cluster.master_hosts", "cluster.commands"),
    ("cluster.cli",),
    ("cluster", "cluster.__main__"),
)
"""The master's layers, bottom first: a module of ``cluster/`` imports from its own layer and
those below it, never from one above. A name is a package (with all its modules) or a
module; ``cluster`` is ``cluster/__init__.py`` alone.

1. ``cluster.protocol``: the wire the workers share. They import it, so it imports nothing of
   the master (nor anything but the standard library).
2. ``cluster.setup``: what the operator asked for (options, settings, config file, hooks)
   and the process made ready before any fork (checks, limits, privileges, title, logs).
   Every part above is built from the settings; nothing here knows those parts.
   ``cluster.hosts.addresses`` (pure, standard library) stands here too: the options'
   checks parse ``--advertise`` and ``--peers`` with it.
3. ``cluster.hosts``: several hosts: the directory of hosts, the host id's lease, and the
   forwarder process that relays a request to its session's host. The master builds on
   its standard-library modules (addresses, the forwarder's config, the lease's child).
4. ``cluster.pool``: the worker processes and their states. It forks with the settings and
   calls the hooks; it knows nothing of client connections.
5. ``cluster.intake`` and ``cluster.relay``: the master's two paths onto the pool, side by
   side: a client connection to the worker it belongs to, a worker's pub/sub message to the
   others.
6. ``cluster.ops``: the operators' face. It reads the pool, the intake and the relay to
   report on them; it acts on the master only through what the master hands it
   (:class:`cluster.ops.control_socket.Controlled`), so it never imports the master.
7. ``cluster.master`` (with ``cluster.commands``, its signal and command queue): the loop
   that builds every part below and ties them together.
8. ``cluster.cli``: the command line: starts a master, or acts on one that runs.
9. ``cluster`` and ``cluster.__main__``: the package's face: ``from cluster import Master``
   for embedding, ``python -m cluster`` for the command line.
"""


def imports_of(source: str, package: tuple[str, ...]) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import statement in ``source``.

    ``package`` is the dotted path of the package the module is in (for relative imports).
    """
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.lineno, imported_from(node, package)))
    return found


def imported_from(node: ast.ImportFrom, package: tuple[str, ...]) -> str:
    """The absolute name of the module ``node`` imports from (``P`` of ``from P import …``),
    written in a module of ``package``."""
    if not node.level:
        return node.module or ""
    base = ".".join(package[:len(package) - node.level + 1])
    return f"{base}.{node.module}" if node.module else base


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


def module_name(path: Path) -> str:
    """The dotted name of the module in the file ``path`` (a package is its ``__init__.py``)."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules_of(packages: tuple[str, ...]) -> dict[str, Path]:
    """Every module of ``packages`` (top-level names) by its dotted name."""
    return {module_name(path): path for package in packages
            for path in sorted(ROOT.joinpath(package).rglob("*.py"))}


def edges(packages: tuple[str, ...]) -> list[tuple[str, str, str]]:
    """("file:line", importer, imported) for every import of a module of ``packages`` by
    another: ``from P import M`` reaches the module ``P.M`` when there is one, else ``P``."""
    modules = modules_of(packages)
    found = []
    for importer, path in modules.items():
        tree = ast.parse(path.read_text())
        package = path.relative_to(ROOT).parts[:-1]
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = imported_from(node, package)
                names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                         for alias in node.names]
            else:
                continue
            found += [(f"{path.relative_to(ROOT)}:{node.lineno}", importer, name)
                      for name in dict.fromkeys(names) if name in modules and name != importer]
    return found


def layer_of(module: str) -> int | None:
    """The index in :data:`LAYERS` of ``module`` (None when no layer names it): the layer of
    the longest name that is the module or a package holding it."""
    held = [(len(name), index) for index, names in enumerate(LAYERS) for name in names
            if module == name or (name != "cluster" and module.startswith(name + "."))]
    return max(held)[1] if held else None


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


def test_the_packages_shipped_are_the_ones_guarded() -> None:
    """setup.cfg ships exactly our packages, each subpackage and each file that is not code
    (the status page) with them, setup.py compiles each C source, and ``own`` guards each against an app's namesake."""
    from cluster.setup import own

    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    shipped = set(config["options"]["packages"].replace(",", " ").split())
    assert {name for name in shipped if "." not in name} == set(own.PACKAGES) == set(PACKAGES)
    assert shipped == {module_name(path) for package in PACKAGES
                       for path in ROOT.joinpath(package).rglob("__init__.py")}
    data = {ROOT.joinpath(*package.split("."), name.strip())
            for package, names in config["options.package_data"].items()
            for name in names.split(",")}
    assert data == {path for package in PACKAGES for path in ROOT.joinpath(package).rglob("*")
                    if path.is_file() and path.suffix not in (".py", ".pyc", ".c", ".so")}
    # C sources are an extension's, compiled by setup.py (the built .so lies beside them)
    built = (ROOT / "setup.py").read_text()
    assert all(str(path.relative_to(ROOT)) in built for package in PACKAGES
               for path in ROOT.joinpath(package).rglob("*.c"))


def _defined_in(module: str) -> set[str]:
    """The functions and classes ``module`` defines at its top level (found, read, not run)."""
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin, f"no module {module}"
    source = Path(spec.origin).read_text()
    return {node.name for node in ast.parse(source).body
            if isinstance(node, (ast.FunctionDef, ast.ClassDef))}


def test_the_paths_in_the_protocol_name_what_the_master_calls() -> None:
    """A path is a string, not an import: a typo here would surface only in a worker.
    (What a runtime's class must implement: tests/e2e/test_boot.py.)"""
    from cluster.protocol.spec import LOADER, RUNTIMES

    for path in RUNTIMES.values():
        module, _, name = path.partition(":")
        assert name in _defined_in(module), path
    assert "load" in _defined_in(LOADER)


RUNTIME_PACKAGES = ("workers.asyncio", "workers.eventlet", "workers.gevent", "workers.threading")
"""The packages of the worker runtimes; the rest of ``workers/`` is their shared core."""


def runtime_package(module: str) -> str | None:
    """The runtime package that holds ``module``; None for a module of the core."""
    return next((package for package in RUNTIME_PACKAGES
                 if module == package or module.startswith(package + ".")), None)


def test_the_workers_core_imports_no_runtime_and_no_runtime_another() -> None:
    """``workers/``'s top is runtime-neutral: a runtime plugs into it, never the reverse,
    and no runtime leans on another's package."""
    assert [f"{where}: {importer} imports {imported}"
            for where, importer, imported in edges(("workers",))
            if runtime_package(imported) not in (None, runtime_package(importer))] == []


def test_the_graph_reads_modules_and_layers_as_meant() -> None:
    """What the two tests below rest on: ``from P import M`` reaches the module ``P.M``, a
    ``TYPE_CHECKING`` import counts, and a package's layer holds its modules."""
    found = {(importer, imported) for _where, importer, imported in edges(PACKAGES)}
    assert {("cluster", "cluster.setup.own"), ("cluster", "cluster.master"),
            ("cluster.master", "cluster.ops.status"),
            ("cluster.ops.status", "cluster.ops.control_socket"),
            ("cluster.intake.dispatch", "cluster.protocol.frames")} <= found
    assert [layer_of(name) for name in ("cluster.protocol.frames", "cluster.setup",
                                        "cluster.relay", "cluster.intake.peek", "cluster",
                                        "cluster.__main__", "cluster.unplaced")] == [
        0, 1, 4, 4, 8, 8, None]


def test_no_module_imports_itself_back() -> None:
    """No circle among the modules of ``cluster/`` and ``workers/``: a circle leaves no
    layer to put its modules in, and makes the order of imports matter."""
    graph: dict[str, set[str]] = {module: set() for module in modules_of(PACKAGES)}
    where = {}
    for line, importer, imported in edges(PACKAGES):
        graph[importer].add(imported)
        where.setdefault((importer, imported), line)
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as error:
        circle = error.args[1][::-1]  # graphlib lists each module before the one importing it
        pytest.fail("a circle: " + ", ".join(f"{where[pair]} {pair[0]} imports {pair[1]}"
                                             for pair in zip(circle, circle[1:])))


def test_every_module_of_the_master_has_a_layer() -> None:
    """A new module (or package) of ``cluster/`` is placed in :data:`LAYERS` on purpose."""
    assert [module for module in modules_of(("cluster",)) if layer_of(module) is None] == []


def test_no_import_runs_up_the_layers() -> None:
    """Inside ``cluster/``, each import reaches the importer's own layer or one below."""
    upward = []
    for where, importer, imported in edges(("cluster",)):
        layer, reached = layer_of(importer), layer_of(imported)
        if layer is not None and reached is not None and layer < reached:
            upward.append(f"{where}: {importer} (layer {layer + 1}) imports {imported} "
                          f"(layer {reached + 1})")
    assert upward == []
