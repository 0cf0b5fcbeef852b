"""The install lines the project shows work: sticky-cluster is not on PyPI.

Every ``pip install`` the docs, the examples, the Makefile or a message of the program
show names sticky-cluster by a path to a checkout or by a wheel, never by a bare name
(which pip would look up on PyPI and not find). ``make dist`` builds that wheel; it is
installed into a fresh venv, away from the checkout, where the command runs and checks
an app.
"""
from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

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


@pytest.mark.e2e
@pytest.mark.long
def test_make_dist_wheel_installs_into_a_fresh_venv_and_runs(tmp_path):
    dist = tmp_path / "dist"
    built = subprocess.run(["make", "dist", f"DIST={dist}"], cwd=ROOT, capture_output=True,
                           text=True, timeout=600)
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = dist.glob("sticky_cluster-*-py3-none-any.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True,
                   timeout=120)  # this Python, with none of this venv's packages
    python = venv / "bin" / "python"
    install = subprocess.run([str(python), "-m", "pip", "install", "--quiet", f"{wheel}[titles]"],
                             capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert install.returncode == 0, install.stdout + install.stderr
    command = venv / "bin" / "sticky-cluster"
    elsewhere = {"cwd": tmp_path, "capture_output": True, "text": True, "timeout": 120,
                 "env": {"PATH": f"{venv / 'bin'}:/usr/bin:/bin"}}
    helped = subprocess.run([str(command), "--help"], **elsewhere)
    assert helped.returncode == 0 and "Usage: sticky-cluster" in helped.stdout, helped
    version = subprocess.run([str(command), "--version"], **elsewhere)
    assert version.returncode == 0 and "0.1.0" in version.stdout, version
    (tmp_path / "app.py").write_text(textwrap.dedent("""\
        import socketio

        sio = socketio.Server(async_mode="eventlet")
    """))
    checked = subprocess.run([str(command), "run", "app:sio", "--check"], **elsewhere)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    installed = subprocess.run([str(python), "-c", "import cluster; print(cluster.__file__)"],
                               **elsewhere)
    assert Path(installed.stdout.strip()).is_relative_to(venv), installed
