"""The boot sequence's contract (:mod:`workers.boot`), each runtime in a process of its own.

Every runtime of :data:`cluster.protocol.spec.RUNTIMES` resolves to a class that implements
:class:`workers.boot.Runtime`. Each is imported in a subprocess of its own: a green runtime
must not meet another one in a process, and importing a runtime's class must patch nothing
(that is :meth:`~workers.boot.Runtime.patch`'s job, in the forked worker). The drain's
policy, without a process: tests/unit/workers/test_boot.py.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from cluster.protocol.spec import RUNTIMES
from tests.support.paths import ROOT

INSPECT = """
import inspect, json, socket, sys
from cluster.protocol.spec import runtime_class
from workers.boot import Runtime
runtime = runtime_class(sys.argv[1])
print(json.dumps({
    "runtime": isinstance(runtime, type) and issubclass(runtime, Runtime),
    "abstract": sorted(getattr(runtime, "__abstractmethods__", ())),
    "name": getattr(runtime, "name", None),
    "patched": socket.socket.__module__ != "socket",
    "green": sorted({"eventlet", "gevent"} & set(sys.modules)),
}))
"""

GREEN_LIBRARY = {"eventlet": ["eventlet"], "gevent": [], "asyncio": [], "threading": []}
"""The green library importing a runtime's class may load (gevent's loads it at boot)."""


@pytest.mark.parametrize("name", sorted(RUNTIMES))
def test_every_runtime_resolves_to_a_class_that_implements_the_contract(name: str) -> None:
    found = subprocess.run([sys.executable, "-c", INSPECT, name], cwd=ROOT, check=True,
                           capture_output=True, text=True).stdout
    assert json.loads(found) == {"runtime": True, "abstract": [], "name": name,
                                 "patched": False, "green": GREEN_LIBRARY[name]}
