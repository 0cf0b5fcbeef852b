"""The benchmark's baseline version, exported by git from this repository (git runs)."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from bench.targets import ROOT, export_version


def test_a_version_git_does_not_know_is_one_line() -> None:
    with pytest.raises(RuntimeError, match=r"^--baseline no-such-ref: [^\n]+$"):
        export_version("no-such-ref", Path("/nonexistent"))


def test_a_version_is_exported_with_its_files_and_its_c_loop_built(tmp_path: Path) -> None:
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()
    tree = export_version(head, tmp_path)
    assert (tree / "cluster" / "__init__.py").is_file() and (tree / "bench" / "app.py").is_file()
    assert list((tree / "cluster" / "intake").glob("_handoff*.so")), "the master's C loop"
