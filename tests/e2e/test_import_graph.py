"""The import graph, as a fresh interpreter loads it: importing the protocol does not load
the master. (The import statements, read with :mod:`ast`: tests/unit/test_import_graph.py.)"""
from __future__ import annotations

import subprocess
import sys

from tests.support.paths import ROOT


def test_importing_the_protocol_does_not_load_the_master() -> None:
    """A worker's ``import cluster.protocol`` runs ``cluster/__init__.py``: it must stay lazy."""
    code = ("import sys, cluster.protocol.frames; "
            "print(sorted(m for m in sys.modules if m.startswith('cluster')))")
    loaded = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout
    assert "cluster.master" not in loaded and "cluster.setup.config" not in loaded, loaded
