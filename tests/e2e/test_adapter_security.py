"""Securing the adapter: Redis AUTH, an ACL user held to its channel, TLS; no password shown.

The "Securing the adapter" examples of docs/security.md, run: each starts its own redis-server.
"""
from __future__ import annotations

import contextlib
import subprocess
import urllib.parse

import pytest
import redis

from cluster.setup.broker_check import probe
from tests.support.clients import room_broadcast_reaches_every_worker, run
from tests.support.brokers import RedisNode, plain_args
from tests.support.masters import cli
from tests.support.ports import free_port

PASSWORD = "s3cret-Pa55"
CHANNEL = "sticky-secure"
ACL_USER = (f"app on >{PASSWORD} resetchannels &{CHANNEL} "
            "-@all +ping +publish +subscribe +unsubscribe")
"""The least the cluster needs: PING, PUBLISH and SUBSCRIBE on its own channel."""


def _run_chat(*args: str) -> subprocess.CompletedProcess:
    return cli("run", "tests.apps.chat:sio", "--bind", f"127.0.0.1:{free_port()}", *args)


@pytest.fixture
def acl_redis(tmp_path):
    """A Redis whose default user is off and whose one user may use one channel only."""
    port = free_port()
    node = RedisNode(tmp_path, plain_args(port, "--user", "default", "off",
                                          "--user", *ACL_USER.split()),
                     port=port, client=lambda: redis.Redis(host="127.0.0.1", port=port,
                                                           username="app", password=PASSWORD,
                                                           socket_timeout=1))
    yield node.start()
    node.stop()


def test_acl_user_joins_the_workers_and_the_password_is_never_logged(start_cluster, acl_redis):
    url = f"redis://app:{PASSWORD}@127.0.0.1:{acl_redis.port}/0"
    cluster = start_cluster(workers=3, args=("--adapter", url, "--channel", CHANNEL))
    listeners, senders, shouter = run(room_broadcast_reaches_every_worker([cluster.url], 9))
    assert len(listeners) >= 2 and senders == {shouter}
    cluster.stop()
    assert PASSWORD not in cluster.log
    # The door is shut: no anonymous client, and the app's user only on its own channel.
    with contextlib.closing(redis.Redis(host="127.0.0.1", port=acl_redis.port)) as anonymous:
        with pytest.raises(redis.AuthenticationError):
            anonymous.publish(CHANNEL, "forged")
    with contextlib.closing(acl_redis.client()) as app_user:
        with pytest.raises(redis.exceptions.NoPermissionError):
            app_user.publish("another-channel", "forged")
        with pytest.raises(redis.exceptions.NoPermissionError):
            app_user.keys("*")


@pytest.mark.parametrize("credentials, why", [
    (f"app:wrong-{PASSWORD}", "invalid username-password pair"),
    ("", "authenticated"),
])
def test_bad_credentials_are_one_line_with_the_password_masked(acl_redis, credentials, why):
    at = f"{credentials}@" if credentials else ""
    result = _run_chat("--adapter", f"redis://{at}127.0.0.1:{acl_redis.port}/0")
    assert result.returncode != 0
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1, result.stderr
    assert why in line.lower()
    assert PASSWORD not in line and "Traceback" not in line
    shown = "app:***@" if credentials else ""
    assert f"cannot reach the broker at redis://{shown}127.0.0.1:{acl_redis.port}/0" in line


def test_requirepass_with_an_empty_user_name_and_an_escaped_password(start_cluster, tmp_path):
    port = free_port()
    password = "p@ss:w/rd-" + PASSWORD
    node = RedisNode(tmp_path, plain_args(port, "--requirepass", password), port=port,
                     client=lambda: redis.Redis(host="127.0.0.1", port=port, password=password,
                                                socket_timeout=1))
    node.start()
    try:
        escaped = urllib.parse.quote(password, safe="")
        cluster = start_cluster(workers=2, args=("--adapter",
                                                 f"redis://:{escaped}@127.0.0.1:{port}/0"))
        listeners, senders, shouter = run(room_broadcast_reaches_every_worker([cluster.url], 6))
        assert len(listeners) == 2 and senders == {shouter}
        cluster.stop()
        assert PASSWORD not in cluster.log
        wrong = _run_chat("--adapter", f"redis://:{escaped}x@127.0.0.1:{port}/0")
        assert wrong.returncode != 0 and PASSWORD not in wrong.stderr
        assert f"redis://:***@127.0.0.1:{port}/0" in wrong.stderr
    finally:
        node.stop()


@pytest.fixture
def certificate(tmp_path):
    """A self-signed certificate for 127.0.0.1 (openssl), its key, for one test."""
    cert, key = tmp_path / "redis.crt", tmp_path / "redis.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return cert, key


def test_tls_rediss_with_auth(start_cluster, tmp_path, certificate):
    cert, key = certificate
    port = free_port()
    node = RedisNode(tmp_path, plain_args(
        "0", "--tls-port", str(port), "--tls-cert-file", str(cert), "--tls-key-file", str(key),
        "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no",
        "--requirepass", PASSWORD), port=port,
        client=lambda: redis.Redis(host="127.0.0.1", port=port, password=PASSWORD, ssl=True,
                                   ssl_ca_certs=str(cert), socket_timeout=1))
    node.start()
    try:
        plain = _run_chat("--adapter", f"redis://:{PASSWORD}@127.0.0.1:{port}/0")
        assert plain.returncode != 0 and PASSWORD not in plain.stderr
        untrusted = _run_chat("--adapter", f"rediss://:{PASSWORD}@127.0.0.1:{port}/0")
        assert untrusted.returncode != 0 and "certificate verify failed" in untrusted.stderr
        assert PASSWORD not in untrusted.stderr
        url = f"rediss://:{PASSWORD}@127.0.0.1:{port}/0?ssl_ca_certs={cert}"
        assert probe(url.replace("rediss://", "valkeys://"), "sticky-cluster") is None
        cluster = start_cluster(workers=2, args=("--adapter", url))
        listeners, senders, shouter = run(room_broadcast_reaches_every_worker([cluster.url], 6))
        assert len(listeners) == 2 and senders == {shouter}
        cluster.stop()
        assert PASSWORD not in cluster.log
    finally:
        node.stop()
