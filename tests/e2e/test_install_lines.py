"""The wheel ``make dist`` builds installs into a fresh venv, away from the checkout, where the
command runs and checks an app. (Every ``pip install`` line the project shows names a path or
a wheel: tests/unit/test_install_lines.py.)"""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support.paths import ROOT


@pytest.mark.long
def test_make_dist_wheel_installs_into_a_fresh_venv_and_runs(tmp_path):
    dist = tmp_path / "dist"
    built = subprocess.run(["make", "dist", f"DIST={dist}"], cwd=ROOT, capture_output=True,
                           text=True, timeout=600)
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = dist.glob("sticky_cluster-*.whl")  # this platform's: it holds the C hand-off loop
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
    compiled = subprocess.run([str(python), "-c", "import cluster.intake._handoff"], **elsewhere)
    assert compiled.returncode == 0, compiled.stderr  # the master hands off in C
