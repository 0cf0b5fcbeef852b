"""Every balancer configuration the docs show, run as written in front of a real cluster.

Each nginx or HAProxy block of the docs (README.md and docs/*.md, through ``pages``) is read
by the comment on its first line, its
listening port and its servers' addresses swapped for loopback ones (nothing else), and
served by the real nginx or haproxy (Debian packages; ``.ci/run`` installs them) in front
of a cluster started with the command the page shows beside it. A browser-like
Socket.IO client (an ``Origin`` header, as every browser sends) then does what a page
does: the polling handshake, the upgrade to websocket, an event and its answer. The app
keeps python-socketio's default CORS policy, as a user's app does.

The systemd units of the docs are run by ``tests/e2e/test_operations.py``; here
``systemd-analyze verify`` checks them as systemd would load them.
"""
from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import aiohttp
import psutil
import pytest
import socketio

from tests.support.clients import disconnect, run, source_address, wait_upgraded
from tests.support.masters import ClusterProcess
from tests.support.ports import free_port
from tests.support.waiting import wait_for
from tests.support.pages import every_page, page, page_names
from tests.e2e.test_operations import readme_unit

APP = "tests.apps.same_origin:sio"
STREAM_MODULE = Path("/usr/lib/nginx/modules/ngx_stream_module.so")
"""Debian's nginx builds the stream module as a dynamic module (libnginx-mod-stream)."""

CONFIGS = {
    "# /etc/haproxy/haproxy.cfg: TCP mode, PROXY protocol": "client",
    "# /etc/nginx/nginx.conf, at the top level (beside http { }): TCP, PROXY protocol": "client",
    "# /etc/nginx/conf.d/chat.conf (inside http { }): HTTP, X-Forwarded-For": "client",
    "# /etc/haproxy/haproxy.cfg: HTTP mode, X-Forwarded-For": "client",
    "# /etc/nginx/conf.d/chat.conf (inside http { }): several hosts": "proxy",
    "# /etc/haproxy/haproxy.cfg: several hosts": "proxy",
}
"""The first line of each configuration the docs show -> whose address the app sees
(``client``: the balancer conveys it; ``proxy``: the balancer's own)."""
TLS_CONFIG = "# /etc/haproxy/haproxy.cfg: TLS terminated here, PROXY v2 to the cluster"
"""Run, with a certificate and an https client, by ``tests/e2e/test_tls_proxy.py``."""

FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n", re.S | re.M)


def fenced_blocks(text: str) -> list[tuple[str, str, int]]:
    """(language, text, end offset) of every fenced block of ``text``, a page."""
    return [(m[1], m[2], m.end()) for m in FENCE.finditer(text)]


def readme_config(marker: str) -> tuple[str, str, list[str] | None]:
    """The block that starts with ``marker``, on whichever page shows it: (language, text,
    the command line of the block right after it when that is a ``sticky-cluster run``)."""
    found = [(blocks, index) for blocks in (fenced_blocks(page(name)) for name in page_names())
             for index, (_lang, text, _end) in enumerate(blocks)
             if text.startswith(marker + "\n")]
    assert len(found) == 1, f"the docs show {marker!r} {len(found)} times"
    blocks, index = found[0]
    lang, text, _end = blocks[index]
    following = blocks[index + 1][1] if index + 1 < len(blocks) else ""
    command = shlex.split(following) if following.startswith("sticky-cluster run ") else None
    return lang, text, command


def swapped(text: str, swaps: dict[str, str]) -> str:
    """``text`` with each key replaced by its value; each must be there."""
    for before, after in swaps.items():
        assert before in text, f"{before!r} is not in the docs' configuration:\n{text}"
        text = text.replace(before, after)
    return text


def test_every_balancer_configuration_of_the_readme_is_run_here():
    shown = {text.split("\n", 1)[0] for name in page_names()
             for lang, text, _end in fenced_blocks(page(name)) if lang in ("nginx", "haproxy")}
    assert shown == set(CONFIGS) | {TLS_CONFIG}


# ------------------------------------------------------------------ the balancers

def start_balancer(kind: str, config: str, workdir: Path, port: int) -> ClusterProcess:
    """nginx or haproxy in the foreground on ``config``, logging to a file, once it listens
    on ``port`` (a :class:`ClusterProcess` for its log and its stop by PID)."""
    path = workdir / f"{kind}.conf"
    if kind == "nginx":
        path.write_text(nginx_file(config, workdir))
        command = ["nginx", "-e", "stderr", "-p", str(workdir), "-c", str(path),
                   "-g", "daemon off;"]
    else:
        path.write_text(config)
        command = ["haproxy", "-db", "-f", str(path)]
    assert shutil.which(command[0]), f"{command[0]} is not installed (.ci/run installs it)"
    balancer = ClusterProcess([], workdir / f"{kind}.log", command=command)
    wait_for(lambda: balancer.proc.poll() is not None or listens(balancer.pid, port), 30,
             what=f"{kind} to listen")
    assert balancer.proc.poll() is None, f"{kind} exited {balancer.proc.returncode}:\n{balancer.log}"
    return balancer


def listens(pid: int, port: int) -> bool:
    """Whether process ``pid`` (not another process of the machine) listens on ``port``."""
    try:
        sockets = psutil.Process(pid).net_connections(kind="tcp")
    except psutil.NoSuchProcess:
        return False
    return any(s.status == psutil.CONN_LISTEN and s.laddr.port == port for s in sockets)


def nginx_file(block: str, workdir: Path) -> str:
    """A whole nginx.conf around the docs' ``block``, with the test's own paths."""
    stream = block.lstrip("#").split("\n", 1)[1].lstrip().startswith("stream")
    head = [f"pid {workdir}/nginx.pid;", "error_log stderr;",
            "worker_processes 1;", "events { worker_connections 256; }"]
    if stream:
        if STREAM_MODULE.exists():
            head.insert(0, f"load_module {STREAM_MODULE};")
        return "\n".join([*head, block])
    temp = [f"{name}_temp_path {workdir}/{name};"
            for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")]
    return "\n".join([*head, "http {", "access_log off;", *temp, block, "}"])


# ------------------------------------------------------------------ the client

async def browser_like_round_trip(url: str, source: str) -> dict:
    """What a page at ``url`` does: connect with its ``Origin`` (polling, then the upgrade
    to websocket) and call an event; the answer."""
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(source, 0)))
    client = socketio.AsyncClient(http_session=session, reconnection=False)
    try:
        await client.connect(url, headers={"Origin": url, "User-Agent": "Mozilla/5.0 (X11)"},
                             transports=["polling", "websocket"], wait_timeout=10)
        await wait_upgraded(client)
        return await client.call("whoami", timeout=10)
    finally:
        if client.connected:
            await disconnect(client)
        await session.close()


# ------------------------------------------------------------------ the scenario

@pytest.mark.parametrize("marker", list(CONFIGS))
def test_readme_balancer_configuration_serves_a_browser(marker, tmp_path):
    kind, config, command = readme_config(marker)
    proxy_port, cluster_port = free_port(), free_port()
    several_hosts = "10.0.0.11:5000" in config
    listen = {"nginx": ("listen 80;", f"listen 127.0.0.1:{proxy_port};"),
              "haproxy": ("bind :80", f"bind 127.0.0.1:{proxy_port}")}[kind]
    config = swapped(config, {
        listen[0]: listen[1],
        **({"10.0.0.11:5000": f"127.0.0.11:{cluster_port}",
            "10.0.0.12:5000": f"127.0.0.12:{cluster_port}"} if several_hosts
           else {"127.0.0.1:5000": f"127.0.0.1:{cluster_port}"})})
    assert ":5000" not in config
    if several_hosts:  # one master stands for both hosts: it listens on both addresses
        assert command is None
        args = ["run", APP, "--bind", f"127.0.0.11:{cluster_port}",
                "--bind", f"127.0.0.12:{cluster_port}"]
    else:
        assert command and command[:3] == ["sticky-cluster", "run", "app:sio"], command
        args = ["run", APP, *(arg.replace("127.0.0.1:5000", f"127.0.0.1:{cluster_port}")
                              for arg in command[3:])]
    cluster = ClusterProcess([*args, "--workers", "2"], tmp_path / "master.log")
    balancer = None
    try:
        cluster.wait_log("cluster ready", timeout=60)
        balancer = start_balancer(kind, config, tmp_path, proxy_port)
        source = source_address(30)
        answer = run(browser_like_round_trip(f"http://127.0.0.1:{proxy_port}", source))
        assert answer["pid"] in cluster.worker_pids()
        if CONFIGS[marker] == "client":
            assert answer["remote_addr"] == source
    except BaseException:
        print(cluster.log[-3000:], balancer.log[-3000:] if balancer else "", file=sys.stderr)
        raise
    finally:
        if balancer is not None:
            balancer.stop()
        cluster.stop()
    assert "not an accepted origin" not in cluster.log.lower()


# ------------------------------------------------------------------ systemd

def test_readme_units_pass_systemd_analyze_verify(tmp_path):
    """The docs' units load in systemd without a warning (an unknown key, a bad value, a
    socket without its service), with the program path of this checkout's venv."""
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is not installed (.ci/run installs it)"
    program = Path(sys.executable).parent / "sticky-cluster"
    assert program.exists(), program
    for name in ("chat.socket", "chat.service"):
        unit = readme_unit(name)
        text = "\n".join(f"[{section}]\n" + "\n".join(f"{key}={value}"
                                                      for key, value in unit[section].items())
                         for section in unit.sections())
        (tmp_path / name).write_text(text.replace("/srv/chat/.venv/bin/sticky-cluster",
                                                  str(program)))
    result = subprocess.run([analyze, "verify", str(tmp_path / "chat.socket"),
                             str(tmp_path / "chat.service")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and not result.stdout + result.stderr, \
        result.stdout + result.stderr


def test_readme_service_runs_unprivileged_off_node_exporter_s_port():
    service = readme_unit("chat.service")["Service"]
    assert service.get("User") not in (None, "", "root", "0")
    assert service.get("Group") not in (None, "", "root", "0")
    status = re.search(r"--status-bind (\S+)", service["ExecStart"])
    assert status and not status[1].endswith(":9100"), "9100 is node_exporter's port"
    assert ":9100" not in every_page()
