"""Where the repository is, for the tests that read its files or run its commands from it."""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
"""The repository's root (tests/support/ is two levels down): README.md, setup.cfg, cluster/."""
