"""The fixtures that start real processes: a redis-server for the session, and masters
for a test (:mod:`tests.support.masters`); the core scenarios' runtimes (``app_target``).

The orphan check (:mod:`tests.support.orphans`) fails a test that leaves a process behind.
The suite runs in parallel (pytest-xdist, ``make test``): every pytest process has its own
session redis-server, its own orphan check and its own block of ports
(:mod:`tests.support.ports`).
"""
from __future__ import annotations

import pytest

from cluster.pool.template import become_subreaper
from tests.support import jsclient, orphans
from tests.support.brokers import RedisNode, plain_args
from tests.support.masters import RUNTIME_TARGETS, ClusterProcess, launch_cluster
from tests.support.orphans import SESSION_PIDS
from tests.support.ports import free_port


@pytest.fixture(scope="session", autouse=True)
def _subreaper():
    become_subreaper()
    yield


@pytest.fixture(autouse=True)
def no_orphans():
    """Fail a test that leaves any process of its own behind (and kill what it left)."""
    before = orphans.children()
    yield
    left = orphans.kill_left_behind(before)
    assert not left, f"processes left behind: {left}"


@pytest.fixture(params=list(RUNTIME_TARGETS))
def app_target(request) -> str:
    """The core end-to-end scenarios run once per entry of :data:`RUNTIME_TARGETS`."""
    return RUNTIME_TARGETS[request.param]


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory) -> RedisNode:
    """A private redis-server for the whole session (of this pytest process)."""
    port = free_port()
    server = RedisNode(tmp_path_factory.mktemp("redis"), plain_args(port), port).start()
    SESSION_PIDS.add(server.proc.pid)
    yield server
    SESSION_PIDS.discard(server.proc.pid)
    server.stop()


@pytest.fixture(scope="session")
def js_client(tmp_path_factory):
    """A folder with socket.io-client v4 installed by npm and the client script beside it
    (:mod:`tests.support.jsclient`), once per session (of this pytest process)."""
    return jsclient.install(tmp_path_factory.mktemp("js-client"))


@pytest.fixture
def start_cluster(tmp_path):
    """Start ``sticky-cluster run`` masters (:func:`launch_cluster`'s arguments, and
    ``wait`` for "cluster ready"); each is stopped by PID when the test ends."""
    started: list[ClusterProcess] = []

    def start(target: str = "tests.apps.chat:sio", *, wait: bool = True,
              **kwargs) -> ClusterProcess:
        cluster = launch_cluster(tmp_path / f"master-{len(started)}.log", target, **kwargs)
        started.append(cluster)
        if wait:
            cluster.wait_log("cluster ready", timeout=60)  # workers import the app: slow when busy
        return cluster

    yield start
    for cluster in started:
        cluster.stop()
