"""TLS in front of the cluster, and what the workers believe of the proxy.

- The HAProxy block of docs/deployment.md, run as it is by a real HAProxy terminating TLS
  with a self-signed certificate (openssl), PROXY v2 to the cluster: the official Python client connects over
  https and upgrades to wss; the app sees https and the client's own address.
- ``X-Forwarded-Proto`` / ``X-Forwarded-Host`` are believed from ``--forwarded-allow-ips``
  peers only, in every runtime (the Socket.IO environ, and the FastAPI / aiohttp / Flask
  app's own URL).
- ``--proxy-allow-from``: a PROXY header from any other peer is refused, in one log line.
"""
from __future__ import annotations

import asyncio
import http.client
import json
import re
import socket
import ssl
import subprocess
import time

import aiohttp
import pytest
import socketio

from tests.support.clients import disconnect, run, source_address
from tests.support.ports import free_port
from tests.support.waiting import wait_for
from tests.e2e.test_readme_proxies import TLS_CONFIG, readme_config

FORWARDED = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "chat.example.com"}


async def seen(url: str, source: str, headers: dict[str, str] | None = None,
               ssl_context: ssl.SSLContext | None = None) -> tuple[dict, str, str]:
    """Connect a real Socket.IO client from ``source`` (polling, then the websocket):
    (whoami's answer, the URL the app saw at connect, the transport it ended on)."""
    connector = aiohttp.TCPConnector(local_addr=(source, 0),
                                     **({"ssl": ssl_context} if ssl_context else {}))
    session = aiohttp.ClientSession(connector=connector)
    client = socketio.AsyncClient(http_session=session, reconnection=False)
    try:
        await client.connect(url, headers=headers or {}, wait_timeout=10)
        deadline = time.monotonic() + 10
        while client.transport() != "websocket" and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return (await client.call("whoami", timeout=10), await client.call("seen_url", timeout=10),
                client.transport())
    finally:
        await disconnect(client)
        await session.close()


def app_url(port: int, source: str, headers: dict[str, str]) -> str:
    """The URL an ASGI / aiohttp app's own route (``/url``) says it was asked for."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10,
                                            source_address=(source, 0))
    try:
        connection.request("GET", "/url", headers=headers)
        return json.loads(connection.getresponse().read())["url"]
    finally:
        connection.close()


def test_forwarded_proto_and_host_are_believed_from_trusted_peers_only(start_cluster, app_target):
    cluster = start_cluster(app_target, workers=1, args=("--forwarded-allow-ips", "127.0.0.1"))
    _, trusted_url, transport = run(seen(cluster.url, "127.0.0.1", FORWARDED))
    assert trusted_url == "https://chat.example.com" and transport == "websocket"
    _, untrusted_url, _ = run(seen(cluster.url, source_address(3), FORWARDED))
    assert untrusted_url == f"http://127.0.0.1:{cluster.port}"
    if app_target.endswith(("fastapi_chat:app", "aiohttp_chat:app", "threading_chat:app")):
        assert app_url(cluster.port, "127.0.0.1", FORWARDED) == "https://chat.example.com/url"
        assert app_url(cluster.port, "127.0.0.1", {"X-Forwarded-Proto": "gopher"}) == (
            f"http://127.0.0.1:{cluster.port}/url")  # not a scheme: ignored
        assert app_url(cluster.port, source_address(4), FORWARDED) == (
            f"http://127.0.0.1:{cluster.port}/url")


def test_without_trusted_peers_no_one_sets_the_scheme(start_cluster):
    cluster = start_cluster("tests.apps.asgi_chat:asgi", workers=1)
    _, url, _ = run(seen(cluster.url, "127.0.0.1", FORWARDED))
    assert url == f"http://127.0.0.1:{cluster.port}"  # python-engineio alone would say https


def _readme_haproxy() -> str:
    _lang, text, command = readme_config(TLS_CONFIG)
    assert command == ["sticky-cluster", "run", "app:sio", "--bind", "127.0.0.1:5000",
                       "--proxy-protocol", "--forwarded-allow-ips", "127.0.0.1"]
    return text


def _self_signed(directory) -> tuple[str, str]:
    """A certificate for 127.0.0.1 and its key, made by openssl: (PEM of both, certificate)."""
    key, cert = directory / "key.pem", directory / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    both = directory / "site.pem"
    both.write_text(cert.read_text() + key.read_text())
    return str(both), str(cert)


def test_readme_haproxy_terminates_tls_in_front_of_the_cluster(start_cluster, tmp_path):
    pem, cert = _self_signed(tmp_path)
    tls_port = free_port()
    cluster = start_cluster(workers=2, wait=False, args=(
        "--proxy-protocol", "--forwarded-allow-ips", "127.0.0.1"))
    config = (_readme_haproxy().replace("bind :443", f"bind 127.0.0.1:{tls_port}")
              .replace("/etc/haproxy/site.pem", pem)
              .replace("127.0.0.1:5000", f"127.0.0.1:{cluster.port}"))
    assert str(cluster.port) in config and pem in config
    (tmp_path / "haproxy.cfg").write_text(config)
    haproxy = subprocess.Popen(["haproxy", "-db", "-f", str(tmp_path / "haproxy.cfg")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        cluster.wait_log("cluster ready")

        def listening() -> bool:
            assert haproxy.poll() is None, haproxy.stderr.read().decode()
            with socket.socket() as probe:
                return probe.connect_ex(("127.0.0.1", tls_port)) == 0

        wait_for(listening, 20, what="haproxy to listen")
        trusting = ssl.create_default_context(cafile=cert)
        url = f"https://127.0.0.1:{tls_port}"

        async def clients() -> list:
            return await asyncio.gather(*(seen(url, source_address(index), ssl_context=trusting)
                                          for index in range(8)))

        results = run(clients())
        for index, (whoami, seen_url, transport) in enumerate(results):
            assert transport == "websocket"  # wss through HAProxy
            assert whoami["remote_addr"] == source_address(index)  # from PROXY v2
            assert seen_url == url  # the app sees https, and the host the client asked for
        assert len({whoami["pid"] for whoami, _, _ in results}) == 2
        with pytest.raises(socketio.exceptions.ConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
            run(seen(url, source_address(9)))  # the certificate is self-signed
    finally:
        haproxy.terminate()
        haproxy.wait(10)


def test_a_proxy_header_from_a_peer_not_allowed_is_refused_in_one_line(start_cluster):
    cluster = start_cluster(workers=1, args=("--proxy-protocol", "--proxy-allow-from", "127.0.0.1"))
    header = b"PROXY TCP4 10.1.2.3 127.0.0.1 1111 5000\r\n"
    request = b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n"
    for index in range(30):
        with socket.create_connection(("127.0.0.1", cluster.port), timeout=10,
                                      source_address=(source_address(index), 0)) as sock:
            sock.sendall(header + request)
            try:
                answer = sock.recv(100)
            except ConnectionResetError:  # closed with the request unread
                answer = b""
            assert answer == b""  # closed without an answer
    with socket.create_connection(("127.0.0.1", cluster.port), timeout=10,
                                  source_address=("127.0.0.1", 0)) as sock:
        sock.sendall(header + request)
        assert sock.recv(100).startswith(b"HTTP/1.1 200")  # an allowed peer is served
    lines = [line for line in cluster.log.splitlines() if "--proxy-allow-from" in line]
    assert len(lines) == 1, lines  # one line for the burst (at most one per 10 s)
    assert re.search(r"refused 1 connection\(s\) from peers not in --proxy-allow-from \(the last "
                     r"from 127\.0\.1\.1\): their PROXY header is not believed", lines[0])
