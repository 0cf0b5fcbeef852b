"""Operating the cluster, end to end: the status endpoint, systemd, the control socket, logs.

Real masters and workers, real Socket.IO clients from distinct loopback addresses, a
real datagram socket standing in for systemd's notify socket, a real inherited
listener for socket activation, and headless Chromium for the live page.
"""
from __future__ import annotations

import asyncio
import collections
import configparser
import contextlib
import http.client
import json
import os
import re
import shlex
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

from tests.support.clients import connected, run, source_address, wait_upgraded
from cluster.ops.status_http import CONNECTION_LIMIT
from tests.support.masters import RUNTIME_TARGETS, cli
from tests.support.paths import ROOT
from tests.support.ports import free_port
from tests.support.waiting import wait_for
from tests.support.pages import every_page
from tests.support.rawclient import KeepAlive, two_sessions_on_two_workers

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

    # One keep-alive connection, two sessions on two workers: the second request is handed back;
    # then a handshake on it, handed back too, to be placed.
    first, second = two_sessions_on_two_workers(cluster.port)
    conn = KeepAlive(cluster.port, source_address(1))
    try:
        assert [conn.request("POST", sid, "40") for sid in (first, second)] == [(200, "OK")] * 2
        assert conn.request("GET", None)[0] == 200
    finally:
        conn.close()

    status, content_type, text = get(f"{cluster.status_url}/metrics")
    assert content_type.startswith("text/plain; version=0.0.4")
    parsed = {family.name: family for family in text_string_to_metric_families(text)}
    assert {"sticky_cluster_workers", "sticky_cluster_handoffs", "sticky_cluster_connections",
            "sticky_cluster_placement_skips", "sticky_cluster_restarts",
            "sticky_cluster_relay_messages", "sticky_cluster_relay_bytes",
            "sticky_cluster_pending_connections", "sticky_cluster_loop_lag_seconds",
            "sticky_cluster_worker_heartbeat_age_seconds"} <= set(parsed)
    handoffs = {s.labels["reason"]: s.value for s in parsed["sticky_cluster_handoffs"].samples
                if s.name.endswith("_total")}
    assert handoffs["handed_back"] >= 1, handoffs
    assert handoffs["sid"] >= 1 and handoffs["least-loaded"] >= 30, handoffs
    assert handoffs["random"] == handoffs["ip"] == 0, handoffs
    totals = {name: family.samples[0].value for name, family in parsed.items()
              if name in ("sticky_cluster_handbacks_placed", "sticky_cluster_handbacks_refused",
                          "sticky_cluster_accept_pauses")}
    assert totals == {"sticky_cluster_handbacks_placed": 1, "sticky_cluster_handbacks_refused": 0,
                      "sticky_cluster_accept_pauses": 0}, totals
    facts = json.loads(get(f"{cluster.status_url}/status")[2])
    assert facts["handbacks"] == {"placed": 1, "refused": 0} and facts["accept_pauses"] == 0
    assert facts["workers_by_state"]["serving"] == 3
    assert facts["connections"]["accepted"] >= 30
    assert facts["adapter"] is None
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
        assert get(f"{cluster.status_url}/healthz")[0] == 200  # silence takes no slot
    finally:
        for sock in silent:
            sock.close()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        raw.sendall(b"POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        assert raw.recv(100).startswith(b"HTTP/1.1 405 ")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        raw.sendall(b"GET /healthz HTTP/1.1\r\n" + b"X: " + b"y" * 9000 + b"\r\n\r\n")
        assert raw.recv(100).startswith(b"HTTP/1.1 431 ")
    assert get(f"{cluster.status_url}/healthz")[0] == 200
    assert "Traceback" not in cluster.log


async def _status_get(port: int, path: str, source: str, timeout: float = 10) -> bytes:
    """The whole answer to one GET on the status port from ``source`` (b"" if closed unanswered)."""
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0)), timeout)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        return await asyncio.wait_for(reader.read(), timeout)
    except ConnectionResetError:
        return b""
    finally:
        writer.close()


async def _hold_a_slot(port: int, source: str, until: float) -> int:
    """Keep a status connection open that never finishes its request (a byte every 0.2 s),
    opening another whenever it is closed, until ``until``; the connections opened."""
    opened = 0
    while time.monotonic() < until and opened < 1000:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port,
                                                           local_addr=(source, 0))
        except OSError:
            await asyncio.sleep(0.05)
            continue
        opened += 1
        try:
            writer.write(b"GET /metrics HTTP/1.1\r\n")
            while time.monotonic() < until and not reader.at_eof():
                await asyncio.sleep(0.2)
                writer.write(b"X: y\r\n")
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()
    return opened


def test_healthz_answers_while_slow_clients_hold_every_slot(start_cluster):
    cluster = with_status(start_cluster, workers=1)
    port = int(cluster.status_url.rsplit(":", 1)[1])

    async def main():
        until = time.monotonic() + 60
        holders = [asyncio.ensure_future(_hold_a_slot(port, "127.0.3.1", until))
                   for _ in range(2 * CONNECTION_LIMIT)]
        await asyncio.sleep(1)  # every slot taken
        answers = []
        for _ in range(30):
            answers.append(await _status_get(port, "/healthz", "127.0.4.1"))
            await asyncio.sleep(0.1)
        for holder in holders:
            holder.cancel()
        await asyncio.gather(*holders, return_exceptions=True)
        return answers

    answers = run(main())
    assert [answer.split(b"\r\n", 1)[0] for answer in answers] == [b"HTTP/1.1 200 OK"] * 30


def test_scrapers_are_all_answered_at_a_bounded_cost_to_the_master(start_cluster):
    cluster = with_status(start_cluster, workers=1)
    port = int(cluster.status_url.rsplit(":", 1)[1])
    master = psutil.Process(cluster.pid)

    async def scrape(index: int, until: float) -> list[bytes]:
        firsts = []
        while time.monotonic() < until and len(firsts) < 1000:
            answer = await _status_get(port, "/metrics", source_address(500 + index))
            firsts.append(answer.split(b"\r\n", 1)[0])
        return firsts

    async def main():
        before, started = sum(master.cpu_times()[:2]), time.monotonic()
        scrapes = asyncio.gather(*(scrape(i, started + 5) for i in range(200)))
        async with connected(cluster.url, source_address(7)) as client:
            whoami = await client.call("whoami", timeout=30)
        answers = await scrapes
        return whoami, answers, (sum(master.cpu_times()[:2]) - before) / (time.monotonic() - started)

    whoami, answers, cpu = run(main())
    assert whoami["pid"] in cluster.worker_pids()
    firsts = collections.Counter(first for each in answers for first in each)
    assert set(firsts) == {b"HTTP/1.1 200 OK"}, firsts  # none closed unanswered
    assert all(answers)
    assert cpu < 0.5, f"the master used {cpu:.0%} of a CPU for {sum(firsts.values())} scrapes"


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


def test_status_and_control_socket_never_show_a_password(start_cluster, tmp_path):
    pid_file = tmp_path / "master.pid"
    broken = tmp_path / "broken"
    cluster = with_status(start_cluster, workers=1, target="tests.apps.flaky:sio",
                          args=("--pid", str(pid_file)), env={"FLAKY_BROKEN": str(broken)})
    broken.write_text("cannot reach postgresql://app:pg-Pa55@db.internal/app "
                      "nor redis://cache.internal/0?password=rd-Pa55")
    failed = cli("reload", "--pid", str(pid_file))
    assert failed.returncode == 1
    masked = "postgresql://app:***@db.internal/app nor redis://cache.internal/0?password=***"
    assert masked in failed.stderr, failed.stderr
    for path in ("/status", "/metrics", "/"):
        assert "Pa55" not in get(f"{cluster.status_url}{path}")[2]
    assert "Pa55" not in failed.stderr + cli("status", "--pid", str(pid_file)).stdout
    facts = json.loads(get(f"{cluster.status_url}/status")[2])
    assert masked in facts["rolls"]["failure"][1]
    assert any(masked in event["message"] for event in facts["events"])
    cluster.stop()
    assert masked in cluster.log and "Pa55" not in cluster.log


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


def readme_unit(name: str) -> configparser.ConfigParser:
    """The unit file ``name`` as the docs show it (docs/operations.md): the one ini block,
    on any page, that starts ``# /etc/systemd/system/NAME``."""
    text = every_page()
    marker = f"```ini\n# /etc/systemd/system/{name}\n"
    assert text.count(marker) == 1, f"the docs show {name} {text.count(marker)} times"
    start = text.index(marker) + len(marker)
    unit = configparser.ConfigParser(interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]  # keys keep their case
    unit.read_string(text[start:text.index("```", start)])
    return unit


def test_readme_units_run_as_systemd_runs_them(tmp_path):
    """The docs' chat.socket and chat.service, run as systemd runs them. A cold start:
    a connection made before the master runs and one made while its workers boot are
    both served once they serve. Then ExecReload, the KillSignal, and the port kept open
    for the next master."""
    socket_unit, service = readme_unit("chat.socket"), readme_unit("chat.service")
    unit = service["Service"]
    assert (unit["Type"], unit["NotifyAccess"], unit["KillMode"]) == ("notify", "main", "mixed")
    assert service["Unit"]["Requires"] == "chat.socket"
    assert socket_unit["Socket"]["ListenStream"].startswith("0.0.0.0:")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))  # the test's stand-in for 0.0.0.0:5000
    listener.listen(int(socket_unit["Socket"]["Backlog"]))
    port = listener.getsockname()[1]
    fd = listener.fileno()
    runtime = tmp_path / unit["RuntimeDirectory"]
    runtime.mkdir()
    gate = tmp_path / "gate"
    notify = NotifySocket(tmp_path / "notify")
    started = []

    def command(line: str) -> list[str]:
        """A unit's command line with the test's program, app, paths, port and size."""
        program, *args = shlex.split(line)
        assert program == f"{unit['WorkingDirectory']}/.venv/bin/sticky-cluster"
        swapped = {"app:sio": "tests.apps.gated:sio", "127.0.0.1:9191": f"127.0.0.1:{free_port()}"}
        by_option = {"--workers": "2", "--graceful-timeout": "1", "--drain-spread": "1"}
        args = [by_option.get(before, swapped.get(arg, arg))
                for before, arg in zip(["", *args], args)]
        return [sys.executable, "-m", "cluster",
                *(arg.replace(f"/run/{unit['RuntimeDirectory']}", str(runtime)) for arg in args)]

    def start_master(index: int) -> subprocess.Popen:
        # As systemd does: the socket is fd 3 and LISTEN_PID is the pid that execs the
        # master (bash: dash cannot redirect fds above 9).
        shell = (f"LISTEN_PID=$$ LISTEN_FDS=1 exec {shlex.join(command(unit['ExecStart']))}"
                 + ("" if fd == 3 else f" 3<&{fd} {fd}<&-"))
        env = {**os.environ, "NOTIFY_SOCKET": notify.path, "GATED_FILE": str(gate),
               "WATCHDOG_USEC": str(int(unit["WatchdogSec"]) * 1_000_000)}
        log = open(tmp_path / f"master-{index}.log", "wb")
        proc = subprocess.Popen(["/bin/bash", "-c", shell], cwd=ROOT, pass_fds=(fd,), env=env,
                                stdout=log, stderr=subprocess.STDOUT)
        started.append((proc, log))
        return proc

    def log_of(index: int) -> str:
        return (tmp_path / f"master-{index}.log").read_text()

    def stop(proc: subprocess.Popen) -> None:
        proc.send_signal(getattr(signal, unit["KillSignal"]))  # KillMode=mixed: the master only
        notify.wait("STOPPING=1")
        assert proc.wait(float(unit["TimeoutStopSec"])) == 0

    try:
        early = _send_handshake(port)  # no master yet: the kernel queues it
        first = start_master(0)
        wait_for(lambda: log_of(0).count("booting (start)") == 2, 60,
                 what="the first master's workers to boot")
        assert f"listening at 127.0.0.1:{port} (master {first.pid}), inherited from systemd" \
            in log_of(0)
        booting = _send_handshake(port)  # the master runs, no worker serves yet
        gate.unlink()
        notify.wait("READY=1", timeout=60)
        for conn in (early, booting):
            _answered(conn)

        reload = subprocess.run(command(unit["ExecReload"]), cwd=ROOT, capture_output=True,
                                text=True, timeout=120)
        assert reload.returncode == 0, reload.stderr
        assert reload.stdout.strip() == (f"master {first.pid}: rolling restart done "
                                         "(2 workers replaced)")
        notify.wait("RELOADING=1")
        notify.wait("READY=1")
        stop(first)
        assert ", 0 dropped" in log_of(0).split("routing totals: ")[1]

        waiting = _send_handshake(port)  # no master now: the port stays open
        start_master(1)
        notify.wait("READY=1", timeout=60)
        _answered(waiting)
        assert "address already in use" not in log_of(1)
        stop(started[-1][0])
    finally:
        for proc, log in started:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                proc.wait(30)
            log.close()
        listener.close()
        notify.sock.close()


def _send_handshake(port: int) -> socket.socket:
    """A connection that has sent an Engine.IO polling handshake, not yet answered."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    sock.sendall(b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n")
    return sock


def _answered(sock: socket.socket) -> None:
    """Read the answer to the handshake sent on ``sock``: a new session; then close it."""
    with sock:
        answer = http.client.HTTPResponse(sock)
        answer.begin()
        body = answer.read().decode()
        assert answer.status == 200 and json.loads(body[1:])["sid"], body


def _polling_handshake(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n")
        return sock.recv(4096)


# ------------------------------------------------------------------ control socket


@pytest.mark.long
def test_control_socket_scale_reload_status_stop(start_cluster, tmp_path):
    pid_file = tmp_path / "master.pid"
    broken = tmp_path / "broken"
    cluster = start_cluster("tests.apps.flaky:sio", workers=1, args=("--pid", str(pid_file)),
                            env={"FLAKY_BROKEN": str(broken)})
    control = Path(f"{pid_file}.ctl")
    assert stat.S_IMODE(control.stat().st_mode) == 0o600

    scaled = cli("scale", "3", "--pid", str(pid_file))
    assert scaled.returncode == 0, scaled.stderr
    assert scaled.stdout.strip() == f"master {cluster.pid}: scaled from 1 to 3 workers (all serving)"
    assert cluster.log.count("scaling from") == 1  # one step, not two TTINs
    status = cli("status", "--pid", str(pid_file))
    assert status.returncode == 0
    assert status.stdout.count(" serving ") == 3, status.stdout

    reloaded = cli("reload", "--control", str(control))
    assert reloaded.returncode == 0, reloaded.stderr
    assert reloaded.stdout.strip() == f"master {cluster.pid}: rolling restart done (3 workers replaced)"
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

ACCESS_LOG_RUNTIMES = ["eventlet", "gevent", "asgi", "aiohttp", "threading"]


@pytest.mark.parametrize("app", [RUNTIME_TARGETS[name] for name in ACCESS_LOG_RUNTIMES],
                         ids=ACCESS_LOG_RUNTIMES)
def test_access_log_has_polling_and_websocket_lines(start_cluster, tmp_path, app):
    access = tmp_path / "access.log"
    cluster = start_cluster(app, workers=2, args=("--access-log", str(access)))

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
    assert all(' HTTP/1.1" ' in line for line in polling + websocket), polling + websocket
    with socket.create_connection(("127.0.0.1", cluster.port), timeout=30) as sock:
        sock.sendall(b'GET /x%0a127.0.0.9%20forged%22 HTTP/1.1\r\nHost: x\r\n\r\n')
        assert sock.recv(4096).startswith(b"HTTP/1.1 ")
    wait_for(lambda: "forged" in access.read_text(), 20, what="the forged request's line")
    forged = [line for line in access.read_text().splitlines() if "forged" in line]
    assert len(forged) == 1
    assert '"GET /x\\x0a127.0.0.9 forged\\" HTTP/1.1" ' in forged[0]


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


def test_an_import_error_names_the_app_line_and_debug_shows_the_traceback():
    result = cli("run", "tests.apps.needs_env:sio", "--check")
    assert result.returncode == 1
    assert result.stderr == ("Error: importing 'tests.apps.needs_env' failed: KeyError: "
                             "'STICKY_TEST_MISSING_SETTING' (at tests/apps/needs_env.py, line 6)\n")
    debug = cli("run", "tests.apps.needs_env:sio", "--check", "--log-level", "debug")
    assert debug.returncode == 1
    lines = debug.stderr.splitlines()
    assert lines[-1] == result.stderr.strip()
    assert "  Traceback (most recent call last):" in lines
    assert '      DATABASE = os.environ["STICKY_TEST_MISSING_SETTING"]' in lines


@pytest.mark.parametrize("option, label", [("--log-file", "log file"), ("--pid", "pid file")])
def test_a_file_in_a_missing_directory_is_one_line_and_check_sees_it(tmp_path, option, label):
    path = tmp_path / "missing" / "cluster.file"
    for check in (("--check",), ()):
        result = cli("run", "tests.apps.chat:sio", "--bind", f"127.0.0.1:{free_port()}",
                     option, str(path), *check)
        assert result.returncode == 1, result
        assert result.stderr == (f"Error: cannot write the {label} {path}: "
                                 f"no directory {path.parent}\n")


def test_a_socketio_server_not_made_for_asgi_is_refused_at_load():
    result = cli("run", "tests.apps.fastapi_wrong_mode:app", "--check")
    assert result.returncode == 1
    assert result.stderr == (
        "Error: tests.apps.fastapi_wrong_mode:app: its socketio.ASGIApp serves an AsyncServer "
        "made with async_mode='aiohttp'; create it with "
        "socketio.AsyncServer(async_mode='asgi')\n")


def test_naming_the_server_inside_a_fastapi_app_says_its_routes_are_not_served(start_cluster):
    warning = ("tests.apps.fastapi_chat:sio is the Socket.IO server of tests.apps.fastapi_chat:app, "
               "whose other routes are not served this way; to serve them, run "
               "tests.apps.fastapi_chat:app")
    checked = cli("run", "tests.apps.fastapi_chat:sio", "--check")
    assert checked.returncode == 0
    assert checked.stderr.endswith(f"[WARNING] {warning}\n") and checked.stderr.count("\n") == 1
    cluster = start_cluster("tests.apps.fastapi_chat:sio", workers=2)
    assert cluster.log.count(warning) == 1
    assert _status_code(f"{cluster.url}/hello") == 404
    started = start_cluster("tests.apps.fastapi_chat:app", workers=1)
    assert "whose other routes are not served" not in started.log


@pytest.mark.parametrize("target", ["tests.apps.chat:sio", "tests.apps.gevent_chat:sio"],
                         ids=["eventlet", "gevent"])
def test_an_event_handler_error_goes_to_the_log_file_as_one_json_record(start_cluster, tmp_path,
                                                                        target):
    """The handler runs in a green thread of its own: what its hub would print to standard
    error goes to the log file, one record."""
    log_file = tmp_path / "cluster.log"
    cluster = start_cluster(target, workers=1, wait=False,
                            args=("--log-file", str(log_file), "--log-format", "json"))
    wait_for(lambda: log_file.exists() and "cluster ready" in log_file.read_text(), 60,
             what="cluster ready in the log file")

    async def main():
        async with connected(cluster.url, source_address(31)) as client:
            await client.emit("fail", "on purpose")
            return await client.call("whoami", timeout=10)  # the worker still serves

    me = run(main())
    wait_for(lambda: "handler failed on purpose" in log_file.read_text(), 20,
             what="the handler's error in the log file")
    records = [json.loads(line) for line in log_file.read_text().splitlines()]
    failed = [r for r in records if "handler failed on purpose" in r.get("exc_info", "")]
    assert len(failed) == 1 and failed[0]["pid"] == me["pid"] and failed[0]["level"] == "ERROR"
    assert failed[0]["message"].startswith(f"worker {me['pid']}: uncaught error in a green")
    assert 'raise RuntimeError("handler failed on purpose")' in failed[0]["exc_info"]
    cluster.stop()
    assert cluster.log == ""  # nothing bypassed the log file


def test_library_lines_are_logged_once_and_an_asked_stop_is_no_crash(start_cluster):
    cluster = start_cluster(workers=1)
    with socket.create_connection(("127.0.0.1", cluster.port), timeout=30) as sock:
        sock.sendall(b"GET /socket.io/?EIO=4&transport=carrier-pigeon HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 400 ")
    cluster.wait_log("Invalid transport")
    worker = cluster.worker_pids().pop()
    cluster.signal(signal.SIGINT)
    assert cluster.wait() == 0
    assert cluster.log.count("Invalid transport") == 1, cluster.log
    assert f"[{worker}] [ERROR] Invalid transport (further occurrences" in cluster.log
    assert re.search(rf"\[INFO\] worker {worker} \(slot 0\) stopped \(lived [0-9.]+ s\)$",
                     cluster.log, re.MULTILINE), cluster.log
    assert "died" not in cluster.log


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_lifespan_traceback_is_a_real_traceback(start_cluster, log_format):
    cluster = start_cluster("tests.apps.fastapi_lifespan:app", workers=1, wait=False,
                            args=("--log-format", log_format))
    assert cluster.wait(120) == 1
    if log_format == "text":
        lines = cluster.log.splitlines()
        assert lines.count("  ConnectionRefusedError: no database at db.internal:5432") == 3
        assert '      raise ConnectionRefusedError("no database at db.internal:5432")' in lines
        assert "\\n" not in cluster.log
    else:
        records = [json.loads(line) for line in cluster.log.splitlines() if line.startswith("{")]
        failed = [r for r in records if r["message"].startswith("ConnectionRefusedError")]
        assert len(failed) == 3
        assert failed[0]["exc_info"].startswith("Traceback (most recent call last):\n")
        assert failed[0]["exc_info"].endswith("ConnectionRefusedError: no database at db.internal:5432")


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
