"""``sticky-cluster balancer nginx|haproxy`` prints configurations the real nginx and haproxy
(Debian's packages; ``.ci/run`` installs them) accept: ``nginx -t`` and ``haproxy -c`` on the
command's output, as a snippet inside ``http { }`` and as a whole nginx.conf, for a directory
given with ``--peers`` (IPv6 and host names among them). How they route is read back in
tests/unit/hosts/test_balancer.py; tests/e2e/test_hosts_behind_balancers.py serves with them.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.masters import cli

PEERS = "1=127.0.0.11:5000,2=127.0.0.12:5000,3=[::1]:5001,64=localhost:5002,4095=127.0.0.13:5000"


def tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(f"/usr/sbin/{name}")
    assert path, f"{name} is not installed (.ci/run installs it)"
    return path


def printed(*args: str) -> str:
    result = cli("balancer", *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def nginx_check(config: Path, workdir: Path) -> subprocess.CompletedProcess:
    return subprocess.run([tool("nginx"), "-t", "-q", "-e", "stderr", "-p", str(workdir),
                           "-c", str(config), "-g", f"pid {workdir}/nginx.pid;"],
                          capture_output=True, text=True, timeout=30)


def http_snippet_file(snippet: str, workdir: Path) -> str:
    """A whole nginx.conf around an ``http { }`` snippet, with the test's own paths."""
    temp = [f"{name}_temp_path {workdir}/{name};"
            for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")]
    return "\n".join(["error_log stderr;", "events { }", "http {", "access_log off;", *temp,
                      snippet, "}"])


BALANCES = [["--balance", "round-robin"], ["--balance", "least-conn", "--no-keepalive"]]


@pytest.mark.parametrize("balance", BALANCES)
def test_nginx_accepts_the_snippet_and_the_whole_file(tmp_path, balance):
    config = tmp_path / "snippet.conf"
    config.write_text(http_snippet_file(
        printed("nginx", "--peers", PEERS, "--listen", "127.0.0.1:8080", *balance),
        tmp_path))
    checked = nginx_check(config, tmp_path)
    assert checked.returncode == 0, checked.stderr + config.read_text()
    whole = tmp_path / "nginx.conf"
    whole.write_text(printed("nginx", "--peers", PEERS, "--full", *balance)
                     .replace("worker_processes auto;",
                              f"worker_processes auto;\nerror_log stderr;"))
    checked = nginx_check(whole, tmp_path)
    assert checked.returncode == 0, checked.stderr + whole.read_text()


@pytest.mark.parametrize("balance", BALANCES)
def test_haproxy_accepts_the_configuration_without_a_warning(tmp_path, balance):
    config = tmp_path / "haproxy.cfg"
    config.write_text(printed("haproxy", "--peers", PEERS, "--listen", "[::1]:8080",
                              *balance))
    checked = subprocess.run([tool("haproxy"), "-c", "-f", str(config)],
                             capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "WARNING" not in checked.stdout + checked.stderr, checked.stdout + checked.stderr


def test_the_command_reads_the_directory_the_masters_keep_in_redis(redis_server):
    """The entries of the channel's hosts (``{channel}:hosts:{id}``), nothing of another
    channel nor what is not an entry; an empty directory and a broker that does not answer
    are one line each, without the password."""
    channel = "t-balancer-directory"
    with redis_server.client() as client:
        client.set(f"{channel}:hosts:1", "127.0.0.11:5000", px=60000)
        client.set(f"{channel}:hosts:2", "127.0.0.12:5000", px=60000)
        client.set(f"{channel}:hosts:junk", "127.0.0.99:5000", px=60000)
        client.set(f"{channel}-other:hosts:3", "127.0.0.13:5000", px=60000)
    expected = printed("haproxy", "--peers", "1=127.0.0.11:5000,2=127.0.0.12:5000")
    assert printed("haproxy", "--adapter", redis_server.url, "--channel", channel) == expected
    empty = cli("balancer", "nginx", "--adapter", redis_server.url, "--channel", "t-nobody")
    assert empty.returncode == 1 and empty.stdout == ""
    assert empty.stderr.startswith("Error: the directory of hosts is empty")
    assert empty.stderr.count("\n") == 1
    gone = cli("balancer", "nginx", "--adapter", "redis://:s3cret@127.0.0.1:1/0")
    assert gone.returncode == 1 and gone.stderr.count("\n") == 1
    assert gone.stderr.startswith("Error: cannot read the directory of hosts from "
                                  "redis://:***@127.0.0.1:1/0: ") and "s3cret" not in gone.stderr
