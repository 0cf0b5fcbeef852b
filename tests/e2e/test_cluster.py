"""The cluster end to end: real master, forked workers, real clients over loopback.

The tests that only connect clients share one three-worker cluster per runtime (an
``xdist_group`` each), idle before each test; the others start their own.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import socket
import subprocess
import sys

import pytest

from tests.support.clients import (connected, room_broadcast_reaches_every_worker, run,
                                   source_address, wait_upgraded)
from tests.support.masters import RUNTIME_TARGETS, cli, shared_cluster
from tests.support.paths import ROOT
from tests.support.ports import free_port
from tests.support.waiting import wait_for


@pytest.fixture(scope="module", params=[
    pytest.param(target, id=name, marks=pytest.mark.xdist_group(f"cluster-{name}"))
    for name, target in RUNTIME_TARGETS.items()])
def runtime_cluster(request, tmp_path_factory):
    """Three workers of one runtime's chat app, for the tests of this module that share it."""
    with shared_cluster(tmp_path_factory.mktemp("cluster") / "master.log", request.param,
                        workers=3) as cluster:
        yield cluster


@pytest.fixture
def cluster(runtime_cluster):
    """The runtime's shared cluster, once the last test's sessions have ended."""
    wait_for(runtime_cluster.idle, 30, what="the last test's sessions to end")
    return runtime_cluster


def test_48_clients_upgrade_stick_and_spread(cluster):

    async def one(index):
        source = source_address(index)
        async with connected(cluster.url, source) as client:
            first = await client.call("whoami", timeout=10)
            await wait_upgraded(client)
            later = [await client.call("whoami", timeout=10) for _ in range(3)]
            return source, first, later

    async def main():
        return await asyncio.gather(*(one(i) for i in range(48)))

    results = run(main())
    by_worker = collections.Counter()
    for source, first, later in results:
        assert {answer["pid"] for answer in later} == {first["pid"]}, source
        assert first["remote_addr"] == source
        by_worker[first["pid"]] += 1
    assert set(by_worker) <= cluster.worker_pids()
    assert len(by_worker) >= 3, by_worker


def test_room_broadcast_through_the_embedded_relay(cluster):
    listeners, senders, shouter = run(room_broadcast_reaches_every_worker([cluster.url], 16, workers=3))
    assert len(listeners) >= 3
    assert senders == {shouter}


def test_polling_only_clients_keep_their_session(cluster):
    # The last test of the shared cluster: the asyncio runtimes hold a polling session for
    # up to the ping timeout (20 s) after its client closed it, so no test waits for idle.

    async def one(index):
        async with connected(cluster.url, source_address(100 + index),
                             transports=["polling"]) as client:
            answers = [await client.call("whoami", timeout=10) for _ in range(20)]
            assert client.transport() == "polling"
            return {answer["pid"] for answer in answers}

    async def main():
        return await asyncio.gather(*(one(i) for i in range(12)))

    for pids in run(main()):
        assert len(pids) == 1


@pytest.mark.parametrize("app_target", [RUNTIME_TARGETS["eventlet"], RUNTIME_TARGETS["fastapi"]],
                         ids=["eventlet", "fastapi"])
def test_room_broadcast_through_redis(start_cluster, redis_server, app_target):
    """A room broadcast reaches the listeners on all three workers through Redis. Each
    server's own Redis manager (eventlet, gevent, asgi, aiohttp, threading) is proven by the
    ``adapter`` cell of tests/e2e/test_runtime_support.py, on its walk's cluster; here the
    default runtime and FastAPI (the app shape the walk has no column for) with three workers."""
    cluster = start_cluster(app_target, workers=3, args=("--adapter", redis_server.url, "--channel", "t-redis"))
    listeners, senders, shouter = run(room_broadcast_reaches_every_worker([cluster.url], 16, workers=3))
    assert len(listeners) >= 3
    assert senders == {shouter}


@pytest.mark.parametrize("app_target", [RUNTIME_TARGETS["eventlet"], RUNTIME_TARGETS["asgi"]],
                         ids=["eventlet", "asgi"])
def test_two_masters_on_one_redis_are_one_cluster(start_cluster, redis_server, app_target):
    """Two hosts on one channel: nothing of it is the runtime's but its Redis manager, which
    the walk's ``adapter`` cell (tests/e2e/test_runtime_support.py) runs in every server;
    here one sync, one asyncio."""
    args = ("--adapter", redis_server.url, "--channel", "t-two-hosts")
    host_a = start_cluster(app_target, workers=2, args=args)
    host_b = start_cluster(app_target, workers=2, args=args)
    listeners, _senders, _shouter = run(
        room_broadcast_reaches_every_worker([host_a.url, host_b.url], 8))
    assert listeners & host_a.worker_pids() and listeners & host_b.worker_pids()


# ------------------------------------------------------------------ CLI errors

@pytest.mark.parametrize("target, message", [
    ("tests.apps.nosuch:sio", "no module named 'tests.apps.nosuch'"),
    ("tests.apps.chat:nosuch", "has no attribute 'nosuch'"),
    ("tests.apps.broken:sio", "RuntimeError: the app is broken on purpose"),
    ("tests.apps.chat", "expected MODULE:ATTRIBUTE"),
])
def test_bad_target_is_one_line_before_any_fork(target, message):
    result = cli("run", target, "--bind", f"127.0.0.1:{free_port()}")
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert "booting" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.parametrize("args, message", [
    (("--bind", "127.0.0.1"), "bad bind '127.0.0.1'"),
    (("--bind", "127.0.0.1:99999"), "bad bind"),
    (("--adapter", "http://127.0.0.1:6379"), "bad adapter URL"),
    (("--workers", "0"), "workers must be more than 0"),
    (("--worker-class", "trio"), "'trio' is not one of"),
    (("--channel", "chat"), "--channel names a pub/sub channel of --adapter; the embedded relay "
                            "has none"),
])
def test_bad_options_are_one_line(args, message):
    result = cli("run", "tests.apps.chat:sio", *args)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_port_in_use_is_one_line():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli("run", "tests.apps.chat:sio", "--bind", f"127.0.0.1:{port}")
    assert result.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port}: address already in use" in result.stderr
    assert "Traceback" not in result.stderr


def test_unreachable_redis_is_one_line():
    port = free_port()
    result = cli("run", "tests.apps.chat:sio", "--bind", f"127.0.0.1:{free_port()}",
                  "--adapter", f"redis://app:s3cret@127.0.0.1:{port}/0")
    assert result.returncode != 0
    assert f"cannot reach the broker at redis://app:***@127.0.0.1:{port}/0" in result.stderr
    assert "s3cret" not in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_options_from_environment(start_cluster):
    cluster = start_cluster(workers=None, env={"STICKY_CLUSTER_WORKERS": "3",
                                               "STICKY_CLUSTER_LOG_LEVEL": "debug"})
    assert len(cluster.worker_pids()) == 3
    assert "[DEBUG]" in cluster.log


def test_help_explains_the_options():
    result = cli("run", "--help")
    assert result.returncode == 0
    for option in ("--workers", "--bind", "--adapter", "--channel", "--worker-connections",
                   "--log-level", "--pid", "STICKY_CLUSTER_WORKERS"):
        assert option in result.stdout


# ------------------------------------------------------------------ embedding

def test_master_embedded_in_a_script_serves_and_stops():
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tests.apps.embedded", str(port)], cwd=ROOT,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        def answers():
            with contextlib.suppress(Exception):
                async def ask():
                    async with connected(f"http://127.0.0.1:{port}", source_address(400)) as c:
                        return await c.call("whoami", timeout=5)
                return run(ask())
        answer = wait_for(answers, 30, interval=0.3, what="the embedded master to serve")
        assert answer["pid"] != proc.pid
        proc.stdin.write("stop\n")
        proc.stdin.flush()
        out, _ = proc.communicate(timeout=20)
        assert proc.returncode == 0, out
        assert "embedded master returned" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
