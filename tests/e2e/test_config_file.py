"""A hook that blocks is interrupted at its timeout: the hook really sleeps, the timer really
runs. (The config file and the other hooks, fast: tests/unit/cluster/test_config_file.py.)"""
from __future__ import annotations

import logging
import time

from cluster.setup.hooks import Hooks


def test_a_hook_that_blocks_is_interrupted_after_the_timeout(caplog):
    def on_reload(master):
        try:
            time.sleep(120)
        except Exception:  # noqa: BLE001 - a hook that swallows errors is still interrupted
            time.sleep(120)

    started = time.monotonic()
    with caplog.at_level(logging.ERROR, logger="sticky_cluster.master"):
        Hooks({"on_reload": on_reload}, timeout=0.3).call("on_reload", None)
    assert time.monotonic() - started < 100  # it did not sleep its 120 s
    [record] = caplog.records
    assert record.getMessage().startswith(
        "hook on_reload did not return within 0.3 s (hook_timeout): interrupted (at ")
