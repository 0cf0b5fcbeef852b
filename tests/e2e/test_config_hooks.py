"""A config file end to end: a real master takes its options and calls its hooks.

Every hook fires, in order, across a start, a rolling restart and a stop; a hook that
raises or blocks is one line and the cluster serves on; ``--print-config`` and a bad
file are one line from the command line; the prometheus_client example of docs/configuration.md
(examples/prometheus_config.py) adds up a counter that every worker increments.
"""
from __future__ import annotations

import asyncio
import re
import signal
import textwrap
import urllib.request

from tests.support.clients import connected, run, source_address
from tests.support.masters import cli, gone
from tests.support.paths import ROOT
from tests.support.waiting import wait_for

HOOKS_FILE = """\
import os
workers = 2
hook_timeout = 1
_LOG = os.environ["HOOK_LOG"]


def _note(*words):
    with open(_LOG, "a") as log:
        log.write(" ".join(str(word) for word in words) + "\\n")


def on_starting(master):
    _note("on_starting", os.getpid())


def when_ready(master):
    _note("when_ready", os.getpid())
    import time
    time.sleep(60)  # blocks: interrupted after hook_timeout


def pre_fork(master, worker):
    _note("pre_fork", os.getpid(), worker.slot)


def post_fork(master, worker):
    _note("post_fork", os.getpid(), worker.slot, worker.pid)


def worker_exit(master, worker):
    _note("worker_exit", os.getpid(), worker.slot, worker.pid, worker.exit.replace(" ", "_"))


def on_reload(master):
    _note("on_reload", os.getpid())
    raise RuntimeError("this hook fails")


def on_exit(master):
    _note("on_exit", os.getpid())
"""


def test_every_hook_fires_in_order_and_a_failing_one_is_one_line(start_cluster, tmp_path):
    config = tmp_path / "hooks_conf.py"
    config.write_text(HOOKS_FILE)
    notes = tmp_path / "hooks.log"
    cluster = start_cluster(args=("-c", str(config)), workers=None,
                            env={"HOOK_LOG": str(notes)})
    first = cluster.worker_pids()
    assert len(first) == 2  # workers = 2 from the file
    cluster.wait_log("hook when_ready did not return within 1 s (hook_timeout): interrupted")

    async def served() -> int:
        async with connected(cluster.url, source_address(0)) as client:
            return (await client.call("whoami", timeout=10))["pid"]

    assert run(served()) in first  # the master went on after the blocked hook
    cluster.signal(signal.SIGHUP)
    cluster.wait_log("rolling restart done")
    cluster.wait_log("drained and exited", count=2)
    second = cluster.worker_pids()
    cluster.signal(signal.SIGTERM)
    assert cluster.wait(30) == 0
    wait_for(lambda: all(gone(pid) for pid in first | second), 10, what="the workers to exit")

    lines = [line.split() for line in notes.read_text().splitlines()]
    names = [line[0] for line in lines]
    master = str(cluster.pid)
    for line in lines:  # every hook but post_fork runs in the master
        assert (line[1] == master) is (line[0] != "post_fork"), line
    assert names[0] == "on_starting" and names[-1] == "on_exit"
    assert names.count("pre_fork") == names.count("post_fork") == 4
    assert names.count("worker_exit") == 4 and names.count("when_ready") == 1
    start, reload = names.index("when_ready"), names.index("on_reload")
    assert sorted(names[1:start]) == ["post_fork", "post_fork", "pre_fork", "pre_fork"]
    assert start < reload < names.index("worker_exit")
    forked = [int(line[3]) for line in lines if line[0] == "post_fork"]
    assert set(forked) == first | second and forked[2:] == sorted(second, key=forked.index)
    exits = {int(line[3]): line[4] for line in lines if line[0] == "worker_exit"}
    assert {pid: exits[pid] for pid in first} == dict.fromkeys(first, "exit_code_0")  # drained
    assert set(exits) == first | second
    for pid in first:  # the old worker of a slot exits after its replacement was forked
        slot = next(line[2] for line in lines if line[0] == "post_fork" and int(line[3]) == pid)
        new = next(i for i, line in enumerate(lines)
                   if line[0] == "post_fork" and line[2] == slot and int(line[3]) in second)
        assert new < next(i for i, line in enumerate(lines)
                          if line[0] == "worker_exit" and int(line[3]) == pid)
    assert re.search(r"hook on_reload raised RuntimeError: this hook fails \(at \S*hooks_conf.py:\d+\)",
                     cluster.log)


def test_print_config_and_a_bad_file_are_one_line(tmp_path):
    config = tmp_path / "conf.py"
    config.write_text("workers = 3\nadapter = 'redis://:pw123@127.0.0.1:6379/0'\n")
    shown = cli("run", "tests.apps.chat:sio", "-c", str(config), "--print-config",
                env={"STICKY_CLUSTER_CHANNEL": "from-env"})
    assert shown.returncode == 0, shown.stderr
    assert re.search(rf"^workers = 3 +# config file {config}:1$", shown.stdout, re.M)
    assert re.search(r"^channel = 'from-env' +# environment STICKY_CLUSTER_CHANNEL$",
                     shown.stdout, re.M)
    assert "pw123" not in shown.stdout and "redis://:***@" in shown.stdout
    by_env = cli("run", "tests.apps.chat:sio", "--print-config", "-w", "5",
                 env={"STICKY_CLUSTER_CONFIG": str(config)})
    assert re.search(r"^workers = 5 +# command line$", by_env.stdout, re.M)
    config.write_text("workers = 3\nworkres = 2\n")
    bad = cli("run", "tests.apps.chat:sio", "-c", str(config))
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert bad.stderr.strip() == (f"Error: {config}:2: unknown option 'workres' (did you mean "
                                  "'workers'?) (the file's own names start with _)")


def _metric(url: str) -> float:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    match = re.search(r'^app_events_total\{event="hello"\} (\S+)$', text, re.M)
    return float(match[1]) if match else 0.0


def test_the_readme_prometheus_example_adds_up_every_workers_counter(start_cluster, tmp_path):
    """The example of docs/configuration.md as it is: examples/prometheus_config.py and
    examples/prometheus_app.py."""
    metrics_dir = tmp_path / "metrics"
    cluster = start_cluster("examples.prometheus_app:app", workers=None,
                            args=("-c", str(ROOT / "examples" / "prometheus_config.py")),
                            env={"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)})
    clients, calls = 12, 5

    async def one(index: int) -> set[int]:
        async with connected(cluster.url, source_address(index)) as client:
            return {await client.call("hello", timeout=10) for _ in range(calls)}

    async def main() -> set[int]:
        return set().union(*await asyncio.gather(*(one(i) for i in range(clients))))

    served = run(main())
    assert len(served) == 2 and served == cluster.worker_pids()  # both workers counted some
    assert _metric(cluster.url) == clients * calls
    assert {path.name.split("_")[-1] for path in metrics_dir.glob("counter_*.db")} == {
        f"{pid}.db" for pid in served}
    cluster.signal(signal.SIGHUP)  # the workers that counted exit: their counts stay
    cluster.wait_log("rolling restart done")
    cluster.wait_log("drained and exited", count=2)
    assert _metric(cluster.url) == clients * calls
    run(one(99))
    assert _metric(cluster.url) == clients * calls + calls
