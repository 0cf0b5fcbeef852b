"""The scale section of docs/benchmarks.md and docs/scale.png, from :mod:`bench.scale`'s results."""
from __future__ import annotations

from pathlib import Path
from typing import Any


def write(docs: Path, results: dict[str, Any]) -> None:
    raise NotImplementedError
