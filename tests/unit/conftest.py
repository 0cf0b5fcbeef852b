"""The unit part starts no process: a test here that starts one (a subprocess, a fork,
an exec) fails at that call, with the reason; such a test belongs in tests/e2e/."""
from __future__ import annotations

import sys

import pytest

STARTS = frozenset({"subprocess.Popen", "os.fork", "os.forkpty", "os.posix_spawn",
                    "os.spawn", "os.exec", "os.system"})
"""The audit events (:func:`sys.addaudithook`) of starting a process."""

_in_a_unit_test = [False]


def _refuse_processes(event: str, _args: tuple) -> None:
    if _in_a_unit_test[0] and event in STARTS:
        raise RuntimeError(f"a unit test starts no process ({event}): move it to tests/e2e/")


sys.addaudithook(_refuse_processes)


@pytest.fixture(autouse=True)
def starts_no_process():
    """Refuse, for the test's length, any process it would start."""
    _in_a_unit_test[0] = True
    yield
    _in_a_unit_test[0] = False
