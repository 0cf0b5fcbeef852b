"""Adapter URLs end to end: a password never printed by the broker check, in a child or by the
CLI, and the master itself never imports a broker client. (The schemes accepted and the
masking itself: tests/unit/protocol/test_adapter_urls.py.)"""
from __future__ import annotations

import subprocess
import sys

import pytest

from cluster.protocol import adapters
from cluster.setup.broker_check import probe
from tests.support.masters import cli
from tests.support.paths import ROOT
from tests.support.ports import free_port


def test_unreachable_brokers_are_one_line_naming_the_url_without_password():
    port = free_port()
    for url in (f"redis://app:s3cret@127.0.0.1:{port}/0",
                f"redis://127.0.0.1:{port}/0?password=s3cret",
                f"valkey://app:s3cret@127.0.0.1:{port}/0",
                f"valkey://127.0.0.1:{port}/0?db=0&password=s3cret",
                f"redis+sentinel://:s3cret@127.0.0.1:{port}/0/mymaster",
                f"amqp://guest:s3cret@127.0.0.1:{port}//"):
        error = probe(url, "sticky-cluster", timeout=1.0)
        assert error is not None and "\n" not in error, url
        assert adapters.redact(url) in error
        assert "s3cret" not in error


@pytest.mark.parametrize("credentials, query", [(":s3cret@", ""), ("", "?password=s3cret")])
def test_the_check_takes_the_url_on_stdin_not_argv(credentials, query):
    port = free_port()
    done = subprocess.run([sys.executable, "-m", "cluster.setup.broker_check", "ch"], cwd=ROOT,
                          input=f"redis://{credentials}127.0.0.1:{port}/0{query}",
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    shown = adapters.redact(f"redis://{credentials}127.0.0.1:{port}/0{query}")
    assert done.stdout.startswith(f"cannot reach the broker at {shown}: ")
    assert "s3cret" not in done.stdout + done.stderr


def test_the_start_up_error_masks_a_password_given_in_the_query():
    port = free_port()
    result = cli("run", "tests.apps.chat:sio", "--bind", f"127.0.0.1:{free_port()}",
                 "--adapter", f"redis://127.0.0.1:{port}/0?password=s3cret")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith(
        f"Error: cannot reach the broker at redis://127.0.0.1:{port}/0?password=***: ")
    assert "s3cret" not in result.stderr + result.stdout


def test_the_master_never_imports_a_broker_client(redis_server):
    """The start-up check runs in a child: the master stays free of redis, kombu, valkey."""
    script = ("import sys\n"
              "from cluster.master import Master\n"
              "from cluster.setup.preflight import preflight\n"
              f"preflight(Master('tests.apps.chat:sio', adapter={redis_server.url!r}).settings)\n"
              "print(sorted({'redis', 'valkey', 'kombu', 'socketio', 'eventlet'} & set(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
