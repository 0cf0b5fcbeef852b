"""A worker cannot take the master down: garbage on a real channel from a real worker.

Each misbehaviour is sent by the test app (:mod:`tests.apps.garbage`) from inside a
worker that serves a real client; the master must kill that worker, replace it in its
slot, log why, and keep serving the clients of the other workers.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import grp
import os
import pwd
import shutil
import signal
import site
import socket
import stat
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest

from tests.support.clients import connected, run, source_address
from tests.support.masters import ClusterProcess, cli, gone
from tests.support.paths import ROOT
from tests.support.ports import free_port
from tests.support.waiting import wait_for

MODES = ("heartbeat", "mixed", "unknown", "huge", "master-kind", "short")
REASONS = {
    "heartbeat": "heartbeat field",
    "mixed": "HEARTBEAT fragment inside an unfinished PUBLISH",
    "unknown": "unknown message kind 200",
    "huge": "PUBLISH message over",
    "master-kind": "HANDOFF is not a message a worker sends",
    "short": "short channel packet",
}


def test_a_worker_sending_garbage_is_killed_and_replaced_and_the_master_serves_on(start_cluster):
    # Three workers: the victims alternate between the two slots that are not the
    # bystander's, so that no slot's crash streak (and respawn backoff) grows long.
    cluster = start_cluster("tests.apps.garbage:sio", workers=3)

    async def main():
        async with connected(cluster.url, source_address(700)) as bystander:
            bystander_pid = (await bystander.call("whoami", timeout=10))["pid"]
            kills: collections.Counter[int] = collections.Counter()
            slot = None
            index = 701
            for mode in MODES:
                # a client on a worker other than the bystander's and the last victim's
                while True:
                    async with connected(cluster.url, source_address(index)) as client:
                        index += 1
                        victim = (await client.call("whoami", timeout=10))["pid"]
                        if victim == bystander_pid or cluster.slot_of(victim) == slot:
                            continue
                        slot = cluster.slot_of(victim)
                        await client.emit("misbehave", mode)
                        await cluster.until_log(f"worker {victim} (slot {slot}) killed with "
                                                f"SIGKILL: protocol violation: ", timeout=30)
                        break
                kills[slot] += 1
                assert REASONS[mode] in cluster.log, (mode, cluster.log)
                await cluster.until_log(f"(slot {slot}) ready after", count=kills[slot] + 1)
                # the bystander's worker never noticed; the master still answers everyone
                assert (await bystander.call("whoami", timeout=10))["pid"] == bystander_pid
                assert gone(victim)
            answers = [await _ask(cluster.url, 800 + i) for i in range(6)]
            return bystander_pid, answers

    bystander_pid, answers = run(main())
    assert cluster.proc.poll() is None, cluster.log
    assert len(cluster.worker_pids()) == 3
    assert all(answer in cluster.worker_pids() for answer in answers)
    assert "\x1b" not in cluster.log and "\nFORGED" not in cluster.log
    assert "Traceback" not in cluster.log


async def _ask(url: str, index: int) -> int:
    async with connected(url, source_address(index)) as client:
        return (await client.call("whoami", timeout=10))["pid"]


def test_a_hand_back_that_is_not_a_socket_is_closed_and_the_other_worker_serves_on(start_cluster):
    """A worker hands back a pipe for a session of another worker: the master must not pass
    it on (it killed the owner's channel reader, which kept heartbeating: a black hole)."""
    cluster = start_cluster("tests.apps.garbage:sio", workers=2)

    async def main():
        async with contextlib.AsyncExitStack() as stack:
            by_pid = {}
            for index in range(760, 780):
                client = await stack.enter_async_context(connected(cluster.url,
                                                                   source_address(index)))
                by_pid.setdefault((await client.call("whoami", timeout=10))["pid"], client)
                if len(by_pid) == 2:
                    break
            (hostile, sender), (victim, owned) = sorted(by_pid.items())
            assert await sender.call("hand_back_pipe", owned.eio.sid, timeout=10) == "sent"
            await cluster.until_log(f"worker {hostile} (slot {cluster.slot_of(hostile)}) handed "
                                    "back a file that is not a stream socket")
            answers = await asyncio.gather(*(_whoami_or_error(cluster.url, 790 + i)
                                             for i in range(20)), return_exceptions=False)
            return victim, answers

    victim, answers = run(main())
    failed = [answer for answer in answers if not isinstance(answer, int)]
    assert failed == [], f"{len(failed)} of {len(answers)} handshakes failed: {failed[:3]}"
    assert victim in answers and victim in cluster.worker_pids()
    assert cluster.log.count("not a stream socket") == 1
    assert "Traceback" not in cluster.log


async def _whoami_or_error(url: str, index: int) -> int | str:
    """The pid of the worker a new client from ``source_address(index)`` lands on, or why not."""
    try:
        async with connected(url, source_address(index)) as client:
            return (await client.call("whoami", timeout=10))["pid"]
    except Exception as exc:  # noqa: BLE001 - every failure is a finding
        return f"{type(exc).__name__}: {exc}"


@pytest.fixture
def cluster_with_few_files(tmp_path):
    """Start ready masters of the chat app whose open files are limited to ``files`` (soft
    and hard, so that the master cannot raise it), as are their workers'; stopped by PID."""
    started = []

    def start(files: int, workers: int, args: tuple = ()) -> ClusterProcess:
        port = free_port()
        cluster = ClusterProcess(
            ["run", "tests.apps.chat:sio", "--bind", f"127.0.0.1:{port}", "--workers",
             str(workers), *args], tmp_path / f"master-{len(started)}.log",
            command=["prlimit", f"--nofile={files}:{files}", sys.executable, "-m", "cluster"])
        cluster.port, cluster.url = port, f"http://127.0.0.1:{port}"
        started.append(cluster)
        cluster.wait_log("cluster ready")
        return cluster

    yield start
    for cluster in started:
        cluster.stop()


def _hold_connections(port: int, count: int, first: bytes) -> list[socket.socket]:
    """``count`` connections to the master that send ``first`` and then wait, open."""
    held = []
    for index in range(count):
        sock = socket.socket()
        sock.bind((source_address(600 + index), 0))
        sock.connect(("127.0.0.1", port))
        if first:
            sock.sendall(first)
        held.append(sock)
    return held


def test_a_master_out_of_files_says_so_once_per_burst(cluster_with_few_files):
    cluster = cluster_with_few_files(48, workers=1, args=("--peek-timeout", "8"))
    held = _hold_connections(cluster.port, 80, b"")  # each waits in the master for its peek
    try:
        cluster.wait_log("out of file descriptors")
        time.sleep(2)  # it used to say so every 0.5 s: four times by now
        assert cluster.log.count("out of file descriptors") == 1
    finally:
        for sock in held:
            sock.close()
    assert run(_whoami_or_error(cluster.url, 690)) in cluster.worker_pids()  # serving again


def test_a_worker_out_of_files_says_so_once_per_burst(cluster_with_few_files):
    cluster = cluster_with_few_files(64, workers=1)
    # each is handed off at once (a request line), then waits in the worker for its headers
    held = _hold_connections(cluster.port, 120, b"GET / HTTP/1.1\r\n")
    try:
        cluster.wait_log("a client's socket did not arrive with its hand-off")
        time.sleep(2)
        assert cluster.log.count("did not arrive") == 1
    finally:
        for sock in held:
            sock.close()


def test_a_sid_with_control_characters_is_logged_escaped(start_cluster, tmp_path):
    log_file = tmp_path / "cluster.log"
    cluster = start_cluster(workers=2, args=("--log-file", str(log_file)), wait=False)
    wait_for(lambda: log_file.exists() and "cluster ready" in log_file.read_text(), 60,
             what="the cluster to be ready")
    sid = "%1b[31mX%0d%0aFORGED:%20evil%00%7f"
    url = f"{cluster.url}/socket.io/?EIO=4&transport=polling&sid={sid}"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url, timeout=10)
    assert refused.value.code == 400
    assert b"Traceback" not in refused.value.read()
    wait_for(lambda: "Invalid session" in log_file.read_text(), 20, what="the bad sid logged")
    for text in (log_file.read_text(), cluster.log):  # the log file, and stderr
        assert "\x1b" not in text and "\r" not in text and "\x00" not in text
        assert not any(line.startswith("FORGED") for line in text.splitlines())
    assert "Invalid session \\x1b[31mX\\r\\nFORGED: evil\\x00\\x7f" in log_file.read_text()


# ------------------------------------------------------------ pid and status files

def _next_pids(count: int) -> range:
    with open("/proc/sys/kernel/ns_last_pid") as src:
        last = int(src.read())
    return range(last + 1, last + 1 + count)


def test_symlinks_planted_on_the_old_temporary_names_write_nothing(start_cluster, tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    pid_file = tmp_path / "master.pid"
    planted = _next_pids(4000)
    for pid in planted:  # the names the master used to write through, for any pid it may get
        for name in (f"master.pid.{pid}.tmp", f"master.pid.json.{pid}.tmp"):
            (tmp_path / name).symlink_to(victim)
    cluster = start_cluster(workers=1, args=("--pid", str(pid_file)))
    assert cluster.pid in planted, "the master's pid was not predicted: widen the range"
    wait_for(lambda: (tmp_path / "master.pid.json").exists(), 30, what="the status file")
    assert pid_file.read_text() == f"{cluster.pid}\n"
    assert not pid_file.is_symlink() and not (tmp_path / "master.pid.json").is_symlink()
    assert oct(pid_file.stat().st_mode & 0o777) == oct(0o644 & ~_umask())
    cluster.signal(signal.SIGHUP)  # the status file is rewritten many times
    cluster.wait_log("rolling restart done")
    cluster.stop()
    assert victim.read_text() == "precious\n"
    assert not pid_file.exists() and not (tmp_path / "master.pid.json").exists()
    leftovers = [p.name for p in tmp_path.iterdir() if not p.is_symlink()]
    assert sorted(leftovers) == ["master-0.log", "victim"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_pid_file_that_is_a_symlink_is_refused(start_cluster, tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (tmp_path / "master.pid").symlink_to(victim)
    cluster = start_cluster(workers=1, args=("--pid", str(tmp_path / "master.pid")), wait=False)
    assert cluster.wait() == 1
    assert cluster.log.strip().splitlines()[-1] == (
        f"Error: pid file {tmp_path / 'master.pid'} is a symbolic link: refusing to follow it")
    assert victim.read_text() == "precious\n"


def test_a_second_master_on_the_same_pid_file_is_refused(start_cluster, tmp_path):
    pid_file = tmp_path / "master.pid"
    first = start_cluster(workers=1, args=("--pid", str(pid_file)))
    second = start_cluster(workers=1, args=("--pid", str(pid_file)), wait=False)
    assert second.wait() == 1
    assert second.log.strip().splitlines()[-1] == (
        f"Error: pid file {pid_file} is held by a running master ({first.pid})")
    assert "Traceback" not in second.log
    assert pid_file.read_text() == f"{first.pid}\n"
    assert cli("status", "--pid", str(pid_file)).returncode == 0


def test_a_pid_file_naming_a_foreign_process_is_neither_signalled_nor_blocking(start_cluster,
                                                                              tmp_path):
    pid_file = tmp_path / "master.pid"
    foreign = subprocess.Popen(["sleep", "60"])
    try:
        pid_file.write_text(f"{foreign.pid}\n")  # a master died; its pid was reused
        for command in (("stop",), ("reload",), ("status",), ("scale", "3")):
            result = cli(*command, "--pid", str(pid_file))
            assert result.returncode == 1, (command, result)
            assert result.stderr.strip() == (
                f"Error: stale pid file {pid_file}: process {foreign.pid} is not the master "
                "that wrote it (no master holds the file's lock)")
        assert foreign.poll() is None, "the foreign process was signalled"
        cluster = start_cluster(workers=1, args=("--pid", str(pid_file)))
        assert f"pid file {pid_file} was stale (it named {foreign.pid}" in cluster.log
        assert pid_file.read_text() == f"{cluster.pid}\n"
        result = cli("stop", "--pid", str(pid_file))
        assert result.stdout.strip() == (f"master {cluster.pid}: fast stop started; "
                                         f"master {cluster.pid} exited")  # its control socket
        assert cluster.wait() == 0
        assert foreign.poll() is None
    finally:
        foreign.kill()
        foreign.wait()


# ------------------------------------------------------------ --user, --group, --umask

@pytest.fixture
def checkout_others_can_enter():
    """Let user ``nobody`` reach this checkout and its venv for the test's duration.

    A checkout made with ``mktemp -d`` sits in a 0700 directory: the workers, run as
    ``nobody``, could import nothing (the master says so in one line, and never gets
    ready). Directories under the temporary directory get o+rx until the test ends
    (Python lists a directory on sys.path to import from it); any other closed
    directory is the machine's own, left alone. The tests that use it share one
    xdist group, so that one never closes the checkout while another still needs it.
    """
    opened = []
    for path in (ROOT, Path(sys.prefix)):
        for parent in [path, *path.parents]:
            mode = parent.stat().st_mode
            if mode & stat.S_IXOTH or parent in (p for p, _ in opened):
                continue
            if not parent.is_relative_to(tempfile.gettempdir()):
                pytest.skip(f"user nobody cannot enter {parent}: a --user test needs a "
                            "checkout that other users can reach")
            opened.append((parent, stat.S_IMODE(mode)))
            parent.chmod(stat.S_IMODE(mode) | stat.S_IROTH | stat.S_IXOTH)
    yield
    for parent, mode in opened:
        parent.chmod(mode)


def _python_others_can_run() -> tuple[str, dict]:
    """An interpreter an unprivileged user can read, with this venv's packages.

    This one when its files are readable by all; else the system's Python of the same
    version (a pyenv Python under /root is not), given this venv's packages.
    """
    if all(os.stat(parent).st_mode & stat.S_IXOTH
           for parent in Path(os.path.realpath(sys.base_prefix)).parents):
        return sys.executable, {}
    system = f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}"
    assert os.path.exists(system), f"no Python that user nobody can run (tried {system})"
    return system, {"PYTHONPATH": os.pathsep.join([str(ROOT), *site.getsitepackages()])}


@pytest.mark.usefixtures("checkout_others_can_enter")
@pytest.mark.xdist_group("checkout-open-to-nobody")  # one process: no test closes it under another
def test_workers_run_as_the_user_and_the_master_keeps_root(start_cluster, tmp_path):
    nobody = pwd.getpwnam("nobody")
    log_file = tmp_path / "cluster.log"
    python, env = _python_others_can_run()
    cluster = start_cluster(workers=2, wait=False, python=python, env=env, args=(
        "--user", "nobody", "--group", grp.getgrgid(nobody.pw_gid).gr_name, "--umask", "027",
        "--pid", str(tmp_path / "master.pid"), "--log-file", str(log_file)))
    wait_for(lambda: log_file.exists() and "cluster ready" in log_file.read_text(), 60,
             what="the cluster to be ready")
    answers = {run(_ask(cluster.url, 900 + i)) for i in range(8)}
    assert answers and answers <= cluster.worker_pids()
    for pid in cluster.worker_pids():
        worker = psutil.Process(pid)
        assert set(worker.uids()) == {nobody.pw_uid}
        assert set(worker.gids()) == {nobody.pw_gid}
        groups = open(f"/proc/{pid}/status").read().split("Groups:")[1].split("\n")[0].split()
        assert "0" not in groups
    assert psutil.Process(cluster.pid).uids().real == 0
    assert (tmp_path / "master.pid").stat().st_uid == 0
    assert oct((tmp_path / "master.pid").stat().st_mode & 0o777) == oct(0o640)
    assert log_file.stat().st_uid == nobody.pw_uid  # workers can reopen it after a rotation


@pytest.mark.usefixtures("checkout_others_can_enter")
@pytest.mark.xdist_group("checkout-open-to-nobody")  # one process: no test closes it under another
def test_scale_by_a_user_the_master_refuses_is_one_line(start_cluster):
    run_dir = Path(tempfile.mkdtemp())  # that user may read the pid file, as in /run
    run_dir.chmod(0o755)
    try:
        pid_file, control = run_dir / "master.pid", run_dir / "master.pid.ctl"
        cluster = start_cluster(workers=1, args=("--pid", str(pid_file)))
        python, env = _python_others_can_run()
        nobody = pwd.getpwnam("nobody")
        for how, message in (
                (("--pid", str(pid_file)), f"Error: not allowed to signal master {cluster.pid} "
                                           f"(from {pid_file}): run this as the master's user"),
                (("--control", str(control)), f"Error: not allowed to use the control socket "
                                              f"{control}: run this as the master's user")):
            result = subprocess.run([python, "-m", "cluster", "scale", "2", *how], cwd=ROOT,
                                    env={**os.environ, **env}, user=nobody.pw_uid,
                                    group=nobody.pw_gid, extra_groups=[], capture_output=True,
                                    text=True, timeout=60)
            assert (result.returncode, result.stderr.strip()) == (1, message)
        assert "scaling" not in cluster.log and len(cluster.worker_pids()) == 1
    finally:
        shutil.rmtree(run_dir)


def test_a_bad_user_or_umask_is_one_line_before_binding(tmp_path):
    port = free_port()
    for args, message in ((("--user", "no-such-user"), "Error: unknown user 'no-such-user'"),
                          (("--group", "no-such-group"), "Error: unknown group 'no-such-group'"),
                          (("--umask", "8"), "Error: bad umask '8': expected an octal number "
                                             "such as 027")):
        result = cli("run", "tests.apps.chat:sio", "--bind", f"127.0.0.1:{port}", *args)
        assert (result.returncode, result.stderr.strip()) == (1, message)


def test_a_crash_of_the_master_is_logged_with_its_traceback_and_stops_the_workers(tmp_path):
    """A bug in the master's own loop (injected): the log file says what, the workers stop."""
    log_file = tmp_path / "cluster.log"
    script = f"""
import sys
from cluster import Master
from cluster.master import ClusterError
from cluster.pool.pool import WorkerPool

def broken_step(self):
    if len(self.serving) == 2:
        raise RuntimeError("injected bug \\x1b[31m")

WorkerPool._step_roll = broken_step
try:
    Master("tests.apps.chat:sio", workers=2, bind="127.0.0.1:{free_port()}",
           log_file={str(log_file)!r}).run()
except ClusterError as exc:
    print(exc, file=sys.stderr)
    sys.exit(1)
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip() == ("master crashed: RuntimeError: injected bug \x1b[31m "
                                     "(the traceback is in the log)")
    log = log_file.read_text()
    assert "[CRITICAL] master crashed; stopping every worker\n  Traceback" in log
    assert "  RuntimeError: injected bug \\x1b[31m" in log
    assert "\x1b" not in log


@pytest.mark.usefixtures("checkout_others_can_enter")
@pytest.mark.xdist_group("checkout-open-to-nobody")  # one process: no test closes it under another
def test_a_log_file_that_is_a_symlink_is_not_given_to_the_user(start_cluster, tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("")
    (tmp_path / "cluster.log").symlink_to(victim)
    python, env = _python_others_can_run()
    cluster = start_cluster(workers=1, wait=False, python=python, env=env, args=(
        "--user", "nobody", "--log-file", str(tmp_path / "cluster.log")))
    wait_for(lambda: "cluster ready" in victim.read_text(), 30, what="the cluster to be ready")
    assert victim.stat().st_uid == 0
    cluster.stop()
