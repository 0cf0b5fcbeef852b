"""``python -m bench.deflate_cost``, small: the option decides what browser-like clients get."""
from __future__ import annotations

import json
import subprocess
import sys

from bench.targets import ROOT


def test_the_deflate_bench_runs_each_runtime_without_and_with_the_option() -> None:
    result = subprocess.run([sys.executable, "-m", "bench.deflate_cost", "--clients", "20",
                             "--runtimes", "eventlet", "--broadcasts", "2",
                             "--interval", "0.1"],
                            cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [(row["websocket_deflate"], row["granted"]) for row in rows] == [(False, 0),
                                                                            (True, 20)]
    assert "| eventlet | on | 20 |" in result.stdout
