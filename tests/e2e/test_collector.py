"""A worker's garbage collection (workers.collector), in a real worker of each runtime the
bench holds clients with: the app's objects frozen, CPython's thresholds while its full
collections are short, an app's own thresholds kept. How the long ones are paced (a clock
of the test's): tests/unit/test_collector.py."""
from __future__ import annotations

import gc

import pytest

from tests.support.clients import connected, run, source_address


def _ask(url: str, event: str) -> dict:
    async def ask():
        async with connected(url, source_address(760)) as client:
            return await client.call(event, timeout=30)

    return run(ask())


@pytest.mark.parametrize("target", ["tests.apps.chat:sio", "tests.apps.asgi_chat:sio"])
def test_a_worker_froze_its_app_and_leaves_short_full_collections_to_cpython(start_cluster,
                                                                            target):
    state = _ask(start_cluster(target, workers=1).url, "collector")
    assert state["app_frozen"]  # no full collection walks what the app's import made
    assert state["thresholds"] == list(gc.get_threshold())  # CPython's, as in this process


def test_an_app_that_sets_its_own_thresholds_keeps_them(start_cluster):
    state = _ask(start_cluster("tests.apps.own_gc:sio", workers=1).url, "collector")
    assert state["thresholds"] == [5000, 20, 20]
