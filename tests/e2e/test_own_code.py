"""sticky-cluster's own packages run, whatever the app's directory holds."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.clients import connected, run, source_address
from tests.support.masters import ClusterProcess
from tests.support.ports import free_port

APP = '''
import os
import socketio

import protocol  # the app's own protocol.py: a name sticky-cluster does not take

sio = socketio.Server(async_mode="eventlet")


@sio.event
def whoami(sid, data=None):
    return {"pid": os.getpid(), "protocol": protocol.VERSION}
'''

APP_PROTOCOL = 'VERSION = "chat/2"\n'

HOSTILE = '''
import pathlib
pathlib.Path(__file__).with_suffix(".ran").write_text("the app's module ran instead of ours")
'''

STICKY_CLUSTER = str(Path(sys.executable).parent / "sticky-cluster")


def _app_dir(tmp_path: Path, *, package: bool = False) -> Path:
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    (app_dir / "app.py").write_text(APP)
    (app_dir / "cluster.py").write_text(HOSTILE)
    (app_dir / "protocol.py").write_text(APP_PROTOCOL)
    if package:
        (app_dir / "workers").mkdir()
        (app_dir / "workers" / "__init__.py").write_text(HOSTILE)
    else:
        (app_dir / "workers.py").write_text(HOSTILE)
    return app_dir


@pytest.mark.parametrize("package", [False, True], ids=["workers.py", "workers/"])
def test_modules_named_like_ours_beside_the_app_never_run(tmp_path, package):
    app_dir = _app_dir(tmp_path, package=package)
    port = free_port()
    cluster = ClusterProcess(["run", "app:sio", "--bind", f"127.0.0.1:{port}", "--workers", "2"],
                             tmp_path / "master.log", cwd=app_dir, command=[STICKY_CLUSTER])
    try:
        cluster.wait_log("cluster ready")

        async def ask() -> dict:
            async with connected(f"http://127.0.0.1:{port}", source_address(700)) as client:
                return await client.call("whoami", timeout=10)

        answer = run(ask())
        assert answer["pid"] in cluster.worker_pids()
        assert answer["protocol"] == "chat/2"  # the app's own module, not one of ours
    finally:
        cluster.stop()
    assert not list(app_dir.rglob("*.ran")), "a module of the app ran in place of ours"
    workers_file = app_dir / ("workers/__init__.py" if package else "workers.py")
    warnings = [line for line in cluster.log.splitlines() if "named like sticky-cluster's own" in line]
    assert len(warnings) == 2, cluster.log
    assert any(str(workers_file) in line for line in warnings)
    assert any(str(app_dir / "cluster.py") in line for line in warnings)
    ready = cluster.log.index("cluster ready")
    assert all(cluster.log.index(line) < ready for line in warnings)


def test_an_app_module_named_like_ours_is_refused_in_one_line(tmp_path):
    app_dir = _app_dir(tmp_path)
    result = subprocess.run([STICKY_CLUSTER, "run", "workers:sio", "--bind",
                             f"127.0.0.1:{free_port()}", "--workers", "1"],
                            cwd=app_dir, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "'workers' is the name of sticky-cluster's own package" in result.stderr.splitlines()[-1]
    assert not list(app_dir.rglob("*.ran"))


@pytest.mark.parametrize("statement", ["import workers", "from cluster import helpers"])
def test_an_app_that_imports_its_own_module_named_like_ours_is_refused_before_any_fork(
        tmp_path, statement):
    app_dir = _app_dir(tmp_path)
    (app_dir / "app.py").write_text(APP.replace("import protocol", f"import protocol\n{statement}"))
    result = subprocess.run([STICKY_CLUSTER, "run", "app:sio", "--bind",
                             f"127.0.0.1:{free_port()}", "--workers", "1"],
                            cwd=app_dir, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    name = statement.split()[1]
    assert (f"{app_dir / 'app.py'}:6 imports {name!r}, which is sticky-cluster's own package, "
            f"not your {app_dir / (name + '.py')}: rename your module") in result.stderr.splitlines()[-1]
    assert "cluster ready" not in result.stderr and not list(app_dir.rglob("*.ran"))
