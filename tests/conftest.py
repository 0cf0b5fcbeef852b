"""The whole suite: the ``e2e`` mark by folder, the order of a run, hypothesis's profile.

A test in tests/e2e/ starts real processes (a cluster, a broker, the CLI, git) or waits on
real time, and is marked ``e2e`` here; tests/unit/ starts no process and does not sleep:
``pytest -m "not e2e"`` (or ``pytest tests/unit``, ``make test-unit``) runs it alone. The
helpers both kinds import are in tests/support/; the fixtures that start processes, and
the orphan check, are in tests/e2e/conftest.py; tests/unit/conftest.py refuses processes.
"""
from __future__ import annotations

from pathlib import Path

import hypothesis
import pytest

E2E = Path(__file__).parent / "e2e"
"""The end-to-end tests' folder: every test in it is marked ``e2e``."""

hypothesis.settings.register_profile("busy", deadline=None)
hypothesis.settings.load_profile("busy")
"""No per-example deadline: on a busy machine a slow example is not a failure."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests of :data:`E2E`; run the ``long`` tests first, then the other
    end-to-end tests, so that in parallel runs no long test starts near the end and
    the short unit tests fill the gaps there. (``--dist loadgroup`` hands out an
    ``xdist_group`` before single tests: keep a group's tests few and short.)"""
    for item in items:
        if item.path.is_relative_to(E2E):
            item.add_marker(pytest.mark.e2e)
    items.sort(key=lambda item: (item.get_closest_marker("long") is None,
                                 item.get_closest_marker("e2e") is None))

