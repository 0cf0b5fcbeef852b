"""The end-to-end walk of the runtimes' table (tests/e2e/test_runtime_support.py) covers the
table, and nothing else: checked here, without a process, so that a new option or server
without its probe fails the unit part."""
from __future__ import annotations

from cluster.protocol.support import SERVERS, SUPPORT
from cluster.setup.options import OPTIONS
from tests.e2e.test_runtime_support import PROBES, ROWS, SETTINGS, TARGETS


def test_the_walk_is_the_table():
    """Every row and column of the table is walked, and nothing else: a new option or a new
    server needs its probe (and a target here) before this passes."""
    worker_options = {option.name for option in OPTIONS if option.worker}
    assert set(SUPPORT) == worker_options
    assert set(PROBES) == set(ROWS) == set(SUPPORT)
    assert set(TARGETS) == set(SERVERS)
    assert set(SETTINGS) | {"adapter", "channel", "access_log"} == worker_options
    for option, cells in SUPPORT.items():
        assert set(cells) == set(SERVERS), option
