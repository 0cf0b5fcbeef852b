"""The install lines the project shows work: sticky-cluster is not on PyPI.

Every ``pip install`` the docs, the examples, the Makefile or a message of the program
show names sticky-cluster by a path to a checkout or by a wheel, never by a bare name
(which pip would look up on PyPI and not find). ``make dist`` builds that wheel: its
install into a fresh venv is tests/e2e/test_install_lines.py.
"""
from __future__ import annotations

import re

import pytest

from tests.support.paths import ROOT

SHOWN = ["README.md", "Makefile", "setup.cfg", "docs/**/*.md", "examples/**/*",
         "cluster/**/*.py", "workers/**/*.py", "bench/**/*.py"]
"""Where the project shows install lines: docs, examples, build files, the code's messages."""

PIP_INSTALL = re.compile(r"pip3? install ([^`\n]*)")
OURS = re.compile(r"sticky[-_]cluster", re.I)
REQUIREMENT = re.compile(r"[^\s\"'\\]+")


def pip_install_lines() -> list[tuple[str, str]]:
    """(file:line, what follows ``pip install``) for every install line shown."""
    found = []
    for pattern in SHOWN:
        for path in sorted(ROOT.glob(pattern)):
            if not path.is_file() or path.suffix in (".png", ".js", ".json"):
                continue
            for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                for match in PIP_INSTALL.finditer(line):
                    found.append((f"{path.relative_to(ROOT)}:{number}", match[1]))
    return found


def names_ours_by_path_or_wheel(arguments: str) -> bool:
    """Whether every requirement of ``arguments`` that names sticky-cluster is a path or a
    wheel file (with or without extras); a comment (``# …``) is not an argument."""
    arguments = arguments.split(" #")[0]
    for requirement in REQUIREMENT.findall(arguments):
        if OURS.search(requirement):
            target = requirement.split("[")[0]
            if "/" not in target and not target.endswith(".whl"):
                return False
    return True


@pytest.mark.parametrize("arguments, works", [
    ("/path/to/sticky-cluster", True),
    ('"/path/to/sticky-cluster[asyncio]" fastapi', True),
    ('"./sticky_cluster-0.1.0-py3-none-any.whl[asyncio]"   # or the wheel', True),
    ('-e ".[test,bench]"', True),
    ("valkey", True),
    ("sticky-cluster", False),
    ('"sticky-cluster[asyncio]" fastapi', False),
    ("'sticky-cluster[valkey]'", False),
    ('\\"sticky-cluster[amqp]\\"', False),
    ("sticky_cluster", False),
])
def test_the_rule(arguments, works):
    assert names_ours_by_path_or_wheel(arguments) is works


def test_every_pip_install_line_names_a_path_or_a_wheel():
    lines = pip_install_lines()
    assert len(lines) >= 10, lines  # the README alone shows more: the scan reads them
    failing = [f"{where}: pip install {arguments}" for where, arguments in lines
               if not names_ours_by_path_or_wheel(arguments)]
    assert not failing, "\n".join(failing)
