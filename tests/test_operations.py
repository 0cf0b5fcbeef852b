"""Operating the cluster, end to end: the status endpoint, systemd, the control socket, logs.

Real masters and workers, real Socket.IO clients from distinct loopback addresses, a
real datagram socket standing in for systemd's notify socket, a real inherited
listener for socket activation, and headless Chromium for the live page.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from clients import connected, run, source_address, wait_upgraded
from conftest import ROOT, cli, free_port, wait_for

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"


def get(url: str, timeout: float = 5) -> tuple[int, str, str]:
    """(status, content type, body) of a GET, whatever the status."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read().decode()


def sessions_by_worker(status_url: str) -> dict[tuple[str, str], float]:
    _status, _type, text = get(f"{status_url}/metrics")
    for family in text_string_to_metric_families(text):
        if family.name == "sticky_cluster_sessions":
            return {(s.labels["slot"], s.labels["pid"]): s.value for s in family.samples}
    raise AssertionError("no sticky_cluster_sessions in /metrics")


def with_status(start_cluster, workers: int = 3, args: tuple = (), **kwargs):
    port = free_port()
    cluster = start_cluster(workers=workers, args=("--status-bind", f"127.0.0.1:{port}", *args),
                            **kwargs)
    cluster.status_url = f"http://127.0.0.1:{port}"
    return cluster


# ------------------------------------------------------------------ status endpoint


def test_30_sessions_on_3_workers_show_in_metrics(start_cluster):
    cluster = with_status(start_cluster, workers=3)
    assert get(f"{cluster.status_url}/healthz")[0] == 200

    async def main():
        async with contextlib.AsyncExitStack() as stack:
            clients = await asyncio.gather(*(
                stack.enter_async_context(connected(cluster.url, source_address(300 + i),
                                                    transports=["polling"]))
                for i in range(30)))
            assert len(clients) == 30
            return await asyncio.to_thread(
                wait_for, lambda: sum(sessions_by_worker(cluster.status_url).values()) == 30,
                15, what="30 sessions in sticky_cluster_sessions")

    run(main())
    by_worker = sessions_by_worker(cluster.status_url)
    assert {pid for _slot, pid in by_worker} == {str(pid) for pid in cluster.worker_pids()}
    assert {slot for slot, _pid in by_worker} == {"0", "1", "2"}
    wait_for(lambda: sum(sessions_by_worker(cluster.status_url).values()) == 0, 30,
             what="the sessions to end in sticky_cluster_sessions")

    status, content_type, text = get(f"{cluster.status_url}/metrics")
    assert content_type.startswith("text/plain; version=0.0.4")
    names = {family.name for family in text_string_to_metric_families(text)}
    assert {"sticky_cluster_workers", "sticky_cluster_handoffs", "sticky_cluster_connections",
            "sticky_cluster_restarts", "sticky_cluster_relay_messages",
            "sticky_cluster_relay_bytes", "sticky_cluster_pending_connections",
            "sticky_cluster_loop_lag_seconds", "sticky_cluster_worker_heartbeat_age_seconds"} <= names
    facts = json.loads(get(f"{cluster.status_url}/status")[2])
    assert facts["workers_by_state"]["serving"] == 3
    assert facts["connections"]["accepted"] >= 30
    assert any("cluster ready" in event["message"] for event in facts["events"])


def test_healthz_is_503_until_a_worker_serves(start_cluster, tmp_path):
    gate = tmp_path / "gate"
    cluster = with_status(start_cluster, workers=2, target="tests.apps.gated:sio", wait=False,
                          env={"GATED_FILE": str(gate)})
    cluster.wait_log("booting (start)", count=2)
    wait_for(lambda: _status_code(f"{cluster.status_url}/healthz") == 503, 20,
             what="/healthz to answer 503 while every worker boots")
    status, _type, body = get(f"{cluster.status_url}/healthz")
    assert (status, body) == (503, "unavailable: no worker serves\n")
    gate.unlink()
    wait_for(lambda: _status_code(f"{cluster.status_url}/healthz") == 200, 30,
             what="/healthz to answer 200 once a worker serves")


def _closed_unanswered(sock: socket.socket) -> bool:
    """True when the peer closed ``sock`` without a byte (an orderly close or a reset)."""
    try:
        return sock.recv(100) == b""
    except ConnectionResetError:
        return True


def _status_code(url: str) -> int | None:
    try:
        return get(url, timeout=2)[0]
    except OSError:
        return None


def test_status_server_answers_bad_requests_and_never_holds_up_clients(start_cluster):
    cluster = with_status(start_cluster, workers=2)
    port = int(cluster.status_url.rsplit(":", 1)[1])
    assert get(f"{cluster.status_url}/nope")[0] == 404
    silent = [socket.create_connection(("127.0.0.1", port)) for _ in range(40)]  # past the limit
    try:
        async def handshake():
            async with connected(cluster.url, source_address(7)) as client:
                return await client.call("whoami", timeout=10)

        assert run(handshake())["pid"] in cluster.worker_pids()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            raw.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert _closed_unanswered(raw)  # past the connection limit: closed at once
    finally:
        for sock in silent:
            sock.close()
    wait_for(lambda: _status_code(f"{cluster.status_url}/healthz") == 200, 30,
             what="the status server to take connections again")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        raw.sendall(b"POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        assert raw.recv(100).startswith(b"HTTP/1.1 405 ")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        raw.sendall(b"GET /healthz HTTP/1.1\r\n" + b"X: " + b"y" * 9000 + b"\r\n\r\n")
        assert raw.recv(100).startswith(b"HTTP/1.1 431 ")
    assert get(f"{cluster.status_url}/healthz")[0] == 200
    assert "Traceback" not in cluster.log


def test_status_port_in_use_is_one_line_before_any_fork():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = cli("run", "tests.apps.chat:sio", "--bind", f"127.0.0.1:{free_port()}",
                     "--status-bind", f"127.0.0.1:{port}")
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (f"Error: cannot listen on 127.0.0.1:{port}: "
                                              "address already in use")
    assert "booting" not in result.stderr and "Traceback" not in result.stderr


@pytest.mark.skipif(not os.path.exists(CHROMIUM),
                    reason=f"{CHROMIUM} is not installed (apt-get install chromium; .ci/run does)")
def test_live_page_shows_the_workers_in_chromium(start_cluster, tmp_path):
    cluster = with_status(start_cluster, workers=3)
    browser = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'chromium'}",
               "--virtual-time-budget=5000"]
    dom = subprocess.run([*browser, "--dump-dom", f"{cluster.status_url}/"], capture_output=True,
                         text=True, timeout=90).stdout
    assert dom.count('<tr class="worker">') == 3, dom[-2000:]
    assert 'class="ok">healthy' in dom
    for pid in cluster.worker_pids():
        assert f"<td>{pid}</td>" in dom
    assert "cluster ready: 3 workers serving" in dom
    shot = tmp_path / "status-page.png"
    subprocess.run([*browser, f"--screenshot={shot}", "--window-size=1100,760",
                    f"{cluster.status_url}/"], capture_output=True, timeout=90)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("STICKY_CLUSTER_SCREENSHOT"):  # refresh docs/status-page.png
        shutil.copy(shot, ROOT / "docs" / "status-page.png")


# ------------------------------------------------------------------------- systemd


class NotifySocket:
    """A SOCK_DGRAM Unix socket playing systemd's notify socket."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.messages: list[str] = []

    def wait(self, field: str, timeout: float = 30) -> float:
        """Wait for a datagram with ``field``; return when it arrived."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                message = self.sock.recv(4096).decode()
            except socket.timeout:
                break
            self.messages.append(message)
            if field in message.split("\n"):
                return time.monotonic()
        raise AssertionError(f"no {field} in {self.messages}")


def test_systemd_notify_ready_reloading_stopping_watchdog(start_cluster, tmp_path):
    notify = NotifySocket(tmp_path / "notify")
    cluster = start_cluster(workers=2, wait=False, env={"NOTIFY_SOCKET": notify.path,
                                                         "WATCHDOG_USEC": "400000"})
    notify.wait("READY=1")

    async def handshake():  # at READY=1, a connection is served at once
        async with connected(cluster.url, source_address(9), transports=["polling"]) as client:
            return await client.call("whoami", timeout=10)

    assert run(handshake())["pid"] in cluster.worker_pids()
    assert "cluster ready" in cluster.log
    assert "STATUS=2 of 2 workers serving, 0 sessions" in notify.messages[-1].split("\n")
    notify.wait("WATCHDOG=1", timeout=10)
    cluster.signal(signal.SIGHUP)
    notify.wait("RELOADING=1")
    notify.wait("READY=1", timeout=60)
    assert "rolling restart done" in cluster.log
    cluster.signal(signal.SIGTERM)
    notify.wait("STOPPING=1")
    assert cluster.wait() == 0
    notify.sock.close()


def test_socket_activation_keeps_the_port_across_master_restarts(tmp_path):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    port = listener.getsockname()[1]
    fd = listener.fileno()
    started = []

    def start_master(index: int) -> subprocess.Popen:
        # As systemd does: the socket is fd 3 and LISTEN_PID is the pid that execs the master
        # (bash: dash cannot redirect fds above 9).
        command = (f'LISTEN_PID=$$ LISTEN_FDS=1 exec "{sys.executable}" -m cluster run '
                   f'tests.apps.chat:sio --workers 2 --bind 127.0.0.1:1 --peek-timeout 60'
                   + ("" if fd == 3 else f" 3<&{fd} {fd}<&-"))
        log = open(tmp_path / f"master-{index}.log", "wb")
        proc = subprocess.Popen(["/bin/bash", "-c", command], cwd=ROOT, pass_fds=(fd,),
                                stdout=log, stderr=subprocess.STDOUT)
        started.append((proc, log))
        return proc

    def log_of(index: int) -> str:
        return (tmp_path / f"master-{index}.log").read_text()

    try:
        first = start_master(0)
        wait_for(lambda: "cluster ready" in log_of(0), 60, what="the first master to be ready")
        assert f"listening at 127.0.0.1:{port} (master {first.pid}), inherited from systemd" in log_of(0)
        assert _polling_handshake(port).startswith(b"HTTP/1.1 200")
        first.send_signal(signal.SIGTERM)
        assert first.wait(30) == 0
        # No master now: the port stays open, the kernel queues the connection...
        waiting = socket.create_connection(("127.0.0.1", port), timeout=60)
        start_master(1)
        wait_for(lambda: "cluster ready" in log_of(1), 60, what="the next master to be ready")
        # ...and the next master serves it (its request is sent once a worker serves: a
        # connection that arrives while no worker serves is the cold-start case).
        waiting.sendall(b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n")
        assert waiting.recv(4096).startswith(b"HTTP/1.1 200")
        waiting.close()
        assert "address already in use" not in log_of(1)
    finally:
        for proc, log in started:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(30)
            log.close()
        listener.close()


def _polling_handshake(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n")
        return sock.recv(4096)


# ------------------------------------------------------------------ control socket


def test_control_socket_scale_reload_status_stop(start_cluster, tmp_path):
    pid_file = tmp_path / "master.pid"
    broken = tmp_path / "broken"
    cluster = start_cluster("tests.apps.flaky:sio", workers=3, args=("--pid", str(pid_file)),
                            env={"FLAKY_BROKEN": str(broken)})
    control = Path(f"{pid_file}.ctl")
    assert stat.S_IMODE(control.stat().st_mode) == 0o600

    scaled = cli("scale", "6", "--pid", str(pid_file))
    assert scaled.returncode == 0, scaled.stderr
    assert scaled.stdout.strip() == f"master {cluster.pid}: scaled from 3 to 6 workers (all serving)"
    assert cluster.log.count("scaling from") == 1  # one step, not three TTINs
    status = cli("status", "--pid", str(pid_file))
    assert status.returncode == 0
    assert status.stdout.count(" serving ") == 6, status.stdout

    reloaded = cli("reload", "--control", str(control))
    assert reloaded.returncode == 0, reloaded.stderr
    assert reloaded.stdout.strip() == f"master {cluster.pid}: rolling restart done (6 workers replaced)"
    assert "rolling restart done" in cluster.log  # it returned after the roll, not before

    broken.write_text("a syntax error in the deploy")
    failed = cli("reload", "--pid", str(pid_file))
    assert failed.returncode == 1
    assert failed.stderr.startswith(f"Error: master {cluster.pid}: rolling restart aborted: ")
    assert "the app is broken: a syntax error in the deploy" in failed.stderr
    assert "Traceback" not in failed.stderr
    broken.unlink()

    bad = cli("scale", "x", "--pid", str(pid_file))
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    stopped = cli("stop", "--pid", str(pid_file))
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.strip() == (f"master {cluster.pid}: fast stop started; "
                                      f"master {cluster.pid} exited")
    assert cluster.proc.poll() is not None or cluster.wait(2) == 0
    assert not control.exists()
    missing = cli("status", "--pid", str(pid_file))
    assert missing.returncode == 1 and missing.stderr.count("\n") == 1


def test_commands_without_a_control_socket_still_use_signals(start_cluster, tmp_path):
    pid_file = tmp_path / "master.pid"
    cluster = start_cluster(workers=2, args=("--pid", str(pid_file),
                                             "--control", str(tmp_path / "elsewhere.ctl")))
    result = cli("reload", "--pid", str(pid_file))  # no PID.ctl: the signal way
    assert result.stdout.strip() == f"master {cluster.pid}: rolling restart started (sent SIGHUP)"
    cluster.wait_log("rolling restart done", timeout=60)
    result = cli("status", "--control", str(tmp_path / "elsewhere.ctl"))
    assert result.returncode == 0 and result.stdout.count(" serving ") == 2


# ---------------------------------------------------------------------- access log


def test_access_log_has_polling_and_websocket_lines(start_cluster, tmp_path):
    access = tmp_path / "access.log"
    cluster = start_cluster(workers=2, args=("--access-log", str(access)))

    async def main():
        async with connected(cluster.url, source_address(21)) as client:
            await wait_upgraded(client)
            return await client.call("whoami", timeout=10)

    me = run(main())
    wait_for(lambda: "transport=websocket" in access.read_text(), 20,
             what="the websocket's line, written when the session ended")
    lines = access.read_text().splitlines()
    polling = [line for line in lines if "transport=polling" in line]
    websocket = [line for line in lines if "transport=websocket" in line]
    assert polling and websocket
    for line in polling + websocket:
        assert line.startswith(source_address(21) + " - - [")
        assert f"slot={cluster.slot_of(me['pid'])} " in line
    assert '"GET /socket.io/?transport=polling&EIO=4' in polling[0]
    assert ' 200 ' in polling[0]
    assert ' 101 ' in websocket[0]
    with socket.create_connection(("127.0.0.1", cluster.port), timeout=30) as sock:
        sock.sendall(b'GET /x%0a127.0.0.9%20forged%22 HTTP/1.1\r\nHost: x\r\n\r\n')
        assert sock.recv(4096).startswith(b"HTTP/1.1 ")
    wait_for(lambda: "forged" in access.read_text(), 20, what="the forged request's line")
    forged = [line for line in access.read_text().splitlines() if "forged" in line]
    assert len(forged) == 1
    assert '"GET /x\\x0a127.0.0.9 forged\\" HTTP/1.' in forged[0]


def test_access_log_format_and_a_bad_one(start_cluster):
    bad = cli("run", "tests.apps.chat:sio", "--access-log", "-", "--access-log-format", "%(nope)s")
    assert bad.returncode == 1
    assert bad.stderr.startswith("Error: bad access log format: unknown atom %(nope)s")
    assert bad.stderr.count("\n") == 1
    cluster = start_cluster(workers=1, args=("--access-log", "-", "--access-log-format",
                                             "%(m)s %(U)s %(s)s %(transport)s slot %(slot)s"))
    assert _polling_handshake(cluster.port).startswith(b"HTTP/1.1 200")
    cluster.wait_log("GET /socket.io/ 200 polling slot 0")


# ----------------------------------------------------------- small things people look for


def test_version():
    result = cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == "sticky-cluster, version 0.1.0"


def test_check_loads_the_target_and_exits(tmp_path):
    port = free_port()
    good = cli("run", "tests.apps.chat:sio", "--bind", f"127.0.0.1:{port}", "--check")
    assert good.returncode == 0, good.stderr
    assert good.stdout.strip() == "ok: tests.apps.chat:sio loads and the options are valid"
    with socket.socket() as probe:  # nothing listens: --check binds nothing
        assert probe.connect_ex(("127.0.0.1", port)) != 0
    bad = cli("run", "tests.apps.broken:sio", "--check")
    assert bad.returncode == 1
    assert bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
    wrong = cli("run", "tests.apps.chat:sio", "--check", "--status-bind", "nowhere")
    assert wrong.returncode == 1 and wrong.stderr.startswith("Error: bad bind 'nowhere'")


def test_json_log_lines_and_process_titles(start_cluster):
    cluster = start_cluster(workers=2, args=("--log-format", "json"))
    lines = [json.loads(line) for line in cluster.log.splitlines() if line.startswith("{")]
    ready = [line for line in lines if line["message"].startswith("cluster ready")]
    assert ready and ready[0]["level"] == "INFO" and ready[0]["pid"] == cluster.pid
    assert "[INFO]" not in cluster.log
    titles = {" ".join(psutil.Process(pid).cmdline()).strip() for pid in cluster.worker_pids()}
    assert titles == {"sticky-cluster worker 0 tests.apps.chat:sio",
                      "sticky-cluster worker 1 tests.apps.chat:sio"}
    assert " ".join(psutil.Process(cluster.pid).cmdline()).strip() == "sticky-cluster master tests.apps.chat:sio"
