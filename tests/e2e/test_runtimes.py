"""The worker runtimes, run: a runtime mismatch refused in one line, and what only some
targets have. Which runtime a target gets: tests/unit/workers/test_runtimes.py.

The core scenarios (spread, stickiness, polling, relay, Redis, two masters, HUP,
kill -9, sid routing, PROXY protocol, a blocked loop) run for every runtime through
the ``app_target`` fixture in test_cluster.py, test_supervision.py and test_routing.py.
"""
from __future__ import annotations

import asyncio
import socket

import pytest

from tests.support.clients import connected, run, source_address, wait_upgraded
from tests.support.masters import cli
from tests.support.ports import free_port


@pytest.mark.parametrize("target, args, env, message", [
    ("tests.apps.fastapi_chat:app", ("--worker-class", "eventlet"), None,
     "needs the asyncio worker class, not eventlet"),
    ("tests.apps.chat:sio", (), {"STICKY_CLUSTER_WORKER_CLASS": "asyncio"},
     "needs the eventlet worker class, not asyncio"),
    ("tests.apps.gevent_chat:sio", ("-k", "eventlet"), None,
     "needs the gevent worker class, not eventlet"),
    ("tests.apps.threading_chat:app", ("-k", "gevent"), None,
     "needs the threading worker class, not gevent"),
    ("tests.apps.chat:sio", ("--threads", "50"), None,
     "--threads is not for eventlet workers: no thread pool in this runtime; its limit is "
     "--worker-connections"),
    ("tests.apps.asgi_chat:broken_lifespan", (), None, "lifespan startup failed"),
])
def test_a_runtime_mismatch_is_one_line_before_any_fork(target, args, env, message):
    result = cli("run", target, "--bind", f"127.0.0.1:{free_port()}", "--workers", "2", *args,
                  env=env)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    if "lifespan" not in message:  # that one boots workers, which fail: the master says why
        assert "booting" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.parametrize("target", ["tests.apps.asgi_chat:sio", "tests.apps.aiohttp_chat:sio",
                                    "tests.apps.gevent_chat:create_flask_app()",
                                    "tests.apps.threading_chat:wsgi"])
def test_the_other_target_shapes_serve_sticky_clients(start_cluster, target):
    cluster = start_cluster(target, workers=2)

    async def one(index):
        async with connected(cluster.url, source_address(700 + index)) as client:
            first = await client.call("whoami", timeout=10)
            await wait_upgraded(client)
            return first, await client.call("whoami", timeout=10)

    async def main():
        return await asyncio.gather(*(one(i) for i in range(12)))

    results = run(main())
    assert all(first == later for first, later in results)
    assert all(first["remote_addr"] == source_address(700 + i)
               for i, (first, _later) in enumerate(results))
    assert len({first["pid"] for first, _ in results}) >= 2
    assert {first["pid"] for first, _ in results} <= cluster.worker_pids()


def _get(port: int, path: str, source: str) -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=10,
                                  source_address=(source, 0)) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def test_the_wrapped_asgi_app_and_fastapi_routes_are_served_too(start_cluster):
    plain = start_cluster("tests.apps.asgi_chat:asgi", workers=2)
    status, body = _get(plain.port, "/", source_address(800))
    assert status == 200
    word, pid, client = body.decode().split()
    assert (word, client) == ("plain", source_address(800))
    assert int(pid) in plain.worker_pids()

    site = start_cluster("tests.apps.fastapi_chat:app", workers=2)
    status, body = _get(site.port, "/hello", source_address(801))
    assert status == 200 and b'"pid"' in body
