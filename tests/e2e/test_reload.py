"""``--reload`` end to end: an edit of the app under a stream of clients.

The app lives in a temporary directory (on PYTHONPATH); the master watches it. An edit
that loads rolls the workers: no client is refused and the new code is served; an edit
that does not load is one line in the log, and the workers keep serving the code they
run.
"""
from __future__ import annotations

import asyncio
import collections
import os
import time

import pytest

from tests.support.clients import connected, run, source_address
from tests.support.masters import cli

APP = """\
import socketio

sio = socketio.Server(async_mode="eventlet")


@sio.event
def version(sid, data=None):
    return {version!r}
"""


def write_app(directory, text: str) -> None:
    """Replace the app's file in one step, as an editor that saves atomically does."""
    temporary = directory / "reload_app.py.new"
    temporary.write_text(text)
    os.replace(temporary, directory / "reload_app.py")


@pytest.mark.long
def test_an_edit_under_a_stream_of_clients_refuses_none_and_serves_the_new_code(
        start_cluster, tmp_path):
    write_app(tmp_path, APP.format(version="first"))
    cluster = start_cluster("reload_app:sio", workers=2, args=("--reload",),
                            env={"PYTHONPATH": str(tmp_path), "PYTHONDONTWRITEBYTECODE": "1"})
    cluster.wait_log(f"--reload: watching {tmp_path} for changes")
    seen: collections.Counter[str] = collections.Counter()
    failures: list[str] = []
    done = asyncio.Event()

    async def stream(lane: int) -> None:
        for turn in range(2000):  # bounded in count, and in time by the run() below
            if done.is_set():
                return
            try:
                async with connected(cluster.url, source_address(lane * 50 + turn % 50)) as client:
                    seen[await client.call("version", timeout=10)] += 1
            except Exception as exc:  # noqa: BLE001 - every failure is counted, none hidden
                failures.append(f"{type(exc).__name__}: {exc}")

    async def edit_and_watch() -> None:
        while sum(seen.values()) < 20:
            await asyncio.sleep(0.1)
        write_app(tmp_path, APP.format(version="second, edited"))
        await cluster.until_log("reload_app.py changed: rolling the workers", 60)
        await cluster.until_log("rolling restart done", 90)
        served = sum(seen.values())
        while sum(seen.values()) < served + 20:
            await asyncio.sleep(0.1)
        write_app(tmp_path, APP.format(version="third") + "def broken(:\n")
        await cluster.until_log("the workers keep the code they run", 60)
        served = sum(seen.values())
        while sum(seen.values()) < served + 20:
            await asyncio.sleep(0.1)
        done.set()

    async def main() -> None:
        await asyncio.gather(edit_and_watch(), *(stream(lane) for lane in range(4)))

    run(main(), timeout=300)
    assert failures == []
    assert seen["first"] > 0 and seen["second, edited"] >= 40
    assert "third" not in seen
    [line] = [line for line in cluster.log.splitlines() if "does not load" in line]
    assert "reload_app.py changed but the app does not load: " in line
    assert "SyntaxError" in line and "reload_app.py, line 9" in line
    assert cluster.log.count("rolling restart of 2 workers") == 1


def test_a_watch_path_that_does_not_exist_is_one_line(tmp_path):
    missing = tmp_path / "nowhere"
    result = cli("run", "tests.apps.chat:sio", "--reload", "--reload-dir", str(missing))
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.strip() == f"Error: --reload-dir: no such file or directory: {missing}"


def test_reload_dir_is_watched_too(start_cluster, tmp_path):
    extra = tmp_path / "templates"
    extra.mkdir()
    (extra / "page.html").write_text("<p>one</p>")
    cluster = start_cluster(workers=1, args=("--reload", "--reload-dir", str(extra / "page.html"),
                                             "--reload-dir", str(extra)))
    cluster.wait_log("--reload: watching ")
    assert f"{extra / 'page.html'}, {extra} for changes" in cluster.log
    time.sleep(0.5)
    (extra / "page.html").write_text("<p>two</p>")  # a file named by --reload-dir: any change
    cluster.wait_log("page.html changed: rolling the workers")
    cluster.wait_log("rolling restart done")
    (extra / "notes.txt").write_text("not python, not named")  # ignored
    (extra / "helper.py").write_text("X = 1\n")
    cluster.wait_log("helper.py changed: rolling the workers")
    assert "notes.txt" not in cluster.log
    cluster.wait_log("rolling restart done", count=2)
    assert cluster.log.count("booting (rolling restart)") == 2
