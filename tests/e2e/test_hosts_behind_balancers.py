"""Three hosts behind real balancers: sticky across hosts whatever the balancer does.

Three masters on 127.0.0.11, .12 and .13 (2 workers each, one private redis-server for
their adapter and their directory of hosts, each advertising its own address) stand for
three hosts. In front of them, the real nginx and HAProxy (Debian's packages):

- plain round robin, as most balancers are: nginx with upstream keep-alive (requests of
  many sessions, of every host, on one pooled connection), HAProxy with ``http-reuse
  always``. A request that lands on a host that does not own its session is forwarded
  there (the forward counters grow);
- the configurations ``sticky-cluster balancer nginx|haproxy`` prints from the directory
  in Redis, which send each request straight to its host: no request is forwarded.

Through each, the official JavaScript client (``socket.io-client`` v4, installed by npm):
every websocket client connects, upgrades and stays on its worker; the polling-only
clients get every ack; a broadcast reaches the clients of every host. Last, a host killed
``-9`` behind the printed configurations: its sessions get 400 from the hosts that stand in
for it. (Requests sent to each host by hand, sessions of two hosts alternating on one
connection, bad input: tests/e2e/test_several_hosts.py.)

The three masters are shared by the module's tests (one ``xdist_group``).
"""
from __future__ import annotations

import json
import signal
import sys
from dataclasses import dataclass

import psutil
import pytest

from cluster.protocol import sids
from tests.e2e.test_readme_proxies import start_balancer
from tests.support.brokers import RedisNode, plain_args
from tests.support.jsclient import run_clients
from tests.support.masters import ClusterProcess, cli, gone
from tests.support.ports import free_port
from tests.support.rawclient import KeepAlive
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.long, pytest.mark.xdist_group("hosts_behind_balancers")]

APP = "tests.apps.chat:sio"
ADDRESSES = ("127.0.0.11", "127.0.0.12", "127.0.0.13")
CHANNEL = "t-hosts-balancers"
WEBSOCKET_CLIENTS = 9
POLLING_CLIENTS = 3
FIRST_SOURCE = 100
"""The JS clients come from 127.0.0.100 on: none is a host's address."""
MESSAGE = "hello from the JavaScript client"


@dataclass
class Hosts:
    """The three masters (by host id), the port they all listen on, the Redis URL."""

    masters: dict[int, ClusterProcess]
    addresses: dict[int, str]
    port: int
    adapter: str

    def host_of_pid(self, pid: int) -> int | None:
        """The host id whose master has worker ``pid``."""
        return next((host for host, master in self.masters.items()
                     if pid in master.worker_pids()), None)

    def facts(self) -> dict[int, dict]:
        """Each master's several-hosts facts (``/status``'s ``hosts``), by host id."""
        return {host: master.status()["hosts"] for host, master in self.masters.items()}

    def forwarded(self) -> int:
        """Connections the masters handed to their forwarders, all told (counted by the
        masters as they hand them over: no report to wait for)."""
        return sum(facts["forwarded"] for facts in self.facts().values())

    def forwarded_requests(self) -> int:
        """Requests the forwarders relayed to another host (as they last reported)."""
        return sum(counts["requests"] for facts in self.facts().values()
                   for counts in facts["peers"].values())


@pytest.fixture(scope="module")
def hosts(tmp_path_factory) -> Hosts:
    workdir = tmp_path_factory.mktemp("hosts")
    redis_port = free_port()
    redis = RedisNode(workdir / "redis", plain_args(redis_port), redis_port).start()
    port = free_port()
    started: list[ClusterProcess] = []
    workers: set[int] = set()
    try:
        for index, address in enumerate(ADDRESSES):
            status_port = free_port()
            master = ClusterProcess(
                ["run", APP, "--workers", "2", "--bind", f"{address}:{port}",
                 "--advertise", f"{address}:{port}", "--adapter", redis.url,
                 "--channel", CHANNEL, "--status-bind", f"127.0.0.1:{status_port}"],
                workdir / f"master-{index + 1}.log")
            master.status_url = f"http://127.0.0.1:{status_port}"
            started.append(master)
        for master in started:
            master.wait_log("cluster ready", timeout=90)
            workers |= master.worker_pids()
        facts = [master.status()["hosts"] for master in started]
        masters = {each["host_id"]: master for each, master in zip(facts, started)}
        assert sorted(masters) == [1, 2, 3], sorted(masters)  # the first free ids
        addresses = {each["host_id"]: each["advertise"].rpartition(":")[0] for each in facts}
        assert sorted(addresses.values()) == list(ADDRESSES)
        found = Hosts(masters, addresses, port, redis.url)
        wait_for(lambda: all(len(facts["known"]) == 3 for facts in found.facts().values()), 30,
                 what="every master to know the three hosts")
        yield found
    except BaseException:
        for master in started:
            print(master.log[-3000:], file=sys.stderr)
        raise
    finally:
        for master in started:
            master.stop()
        redis.stop()
    wait_for(lambda: all(gone(pid) for pid in workers), 15, what="the hosts' workers to exit")


# ------------------------------------------------------------------ the balancers

def round_robin(kind: str, hosts: Hosts, listen: int) -> str:
    """A plain round-robin balancer over the three hosts, as a user starts with: connections
    to the hosts pooled and reused for any client's requests."""
    servers = [f"{address}:{hosts.port}" for address in ADDRESSES]
    if kind == "nginx":
        return "\n".join([
            "# round robin, upstream keep-alive",
            "map $http_upgrade $connection_upgrade {", "    default upgrade;", "    '' '';", "}",
            "upstream hosts {", *(f"    server {server};" for server in servers),
            "    keepalive 16;", "}",
            "server {", f"    listen 127.0.0.1:{listen};", "    location / {",
            "        proxy_pass http://hosts;", "        proxy_http_version 1.1;",
            "        proxy_set_header Host $http_host;",
            "        proxy_set_header Upgrade $http_upgrade;",
            "        proxy_set_header Connection $connection_upgrade;",
            "        proxy_read_timeout 1h;", "    }", "}", ""])
    return "\n".join([
        "# round robin, http-reuse always",
        "defaults", "    mode http", "    timeout connect 5s", "    timeout client 60s",
        "    timeout server 60s", "    timeout tunnel 1h",
        "frontend balancer", f"    bind 127.0.0.1:{listen}", "    default_backend hosts",
        "backend hosts", "    balance roundrobin", "    http-reuse always",
        *(f"    server host{index} {server}" for index, server in enumerate(servers, 1)), ""])


def by_sid(kind: str, hosts: Hosts, listen: int) -> str:
    """What ``sticky-cluster balancer KIND`` prints from the directory in Redis."""
    printed = cli("balancer", kind, "--adapter", hosts.adapter, "--channel", CHANNEL,
                  "--listen", f"127.0.0.1:{listen}")
    assert printed.returncode == 0, printed.stderr
    for address in ADDRESSES:
        assert f"{address}:{hosts.port}" in printed.stdout
    return printed.stdout


CONFIGS = {"round-robin": round_robin, "by-sid": by_sid}


# ------------------------------------------------------------------ the scenarios

@pytest.mark.parametrize("routing", list(CONFIGS))
@pytest.mark.parametrize("kind", ["nginx", "haproxy"])
def test_js_clients_stay_on_their_worker_across_hosts(hosts, js_client, tmp_path, kind, routing):
    before = hosts.forwarded()
    listen = free_port()
    balancer = start_balancer(kind, CONFIGS[routing](kind, hosts, listen), tmp_path, listen)
    try:
        results = run_clients(js_client, f"http://127.0.0.1:{listen}", WEBSOCKET_CLIENTS,
                              POLLING_CLIENTS, FIRST_SOURCE,
                              log="\n".join(m.log[-2000:] for m in hosts.masters.values()))
    finally:
        balancer.stop()
    clients = results["clients"]
    assert len(clients) == WEBSOCKET_CLIENTS + POLLING_CLIENTS
    assert all(client["connected"] for client in clients)
    websocket = [client for client in clients if not client["polling_only"]]
    polling = [client for client in clients if client["polling_only"]]
    assert [client["transport"] for client in websocket] == ["websocket"] * WEBSOCKET_CLIENTS
    assert [client["transport"] for client in polling] == ["polling"] * POLLING_CLIENTS
    assert all(client["echoes"] == [f"echo {i}" for i in range(5)] for client in polling)

    # each session lives on the host its sid names, on one worker from start to end
    for client in clients:
        start, end = client["whoami"], client["whoami_end"]
        assert end == start, f"client {client['index']} moved: {start} -> {end}"
        assert hosts.host_of_pid(start["pid"]) == sids.host_of(start["sid"]), start
    served = {sids.host_of(client["whoami"]["sid"]) for client in clients}
    assert served == {1, 2, 3}, f"new sessions reached hosts {served} only"

    # the broadcast from one host reached the clients of every host, once
    assert results["shout"] == "ok"
    assert [client["heard"] for client in clients] == [1] * len(clients)

    forwarded = hosts.forwarded() - before
    if routing == "by-sid":
        assert forwarded == 0, "the sid-aware balancer sent requests to the wrong host"
    else:
        assert forwarded > 0, "round robin over three hosts, and nothing was forwarded?"
        wait_for(lambda: hosts.forwarded_requests() > 0, 10,
                 what="the forwarders to report their forwards")


def test_the_masters_logs_hold_no_traceback(hosts):
    """After every scenario: nothing went wrong quietly on any host."""
    for host, master in hosts.masters.items():
        assert "Traceback" not in master.log, f"host {host}:\n{master.log[-3000:]}"


# ------------------------------------------------------------------ last: a host dies

def polling(port: int, method: str, sid: str | None, body: str = "",
            source: str = "127.0.0.140") -> tuple[int, str]:
    """One polling request through the balancer on ``port``, on a connection of its own."""
    client = KeepAlive(port, source)
    try:
        return client.request(method, sid, body)
    finally:
        client.close()


def test_a_host_killed_9_its_sessions_get_400_through_the_sid_aware_balancers(hosts, tmp_path):
    """Host 3 (master, workers, forwarder) killed with SIGKILL behind the configurations
    printed while it lived: its sessions' requests are answered 400 by the hosts that stand
    in for it (their clients reconnect), never held; host 1's session goes on; every new
    session is placed on a living host. Last in the module: the host stays dead."""
    balancers, ports = [], {}
    try:
        for kind in ("nginx", "haproxy"):
            ports[kind] = free_port()
            workdir = tmp_path / kind
            workdir.mkdir()
            balancers.append(start_balancer(kind, by_sid(kind, hosts, ports[kind]), workdir,
                                            ports[kind]))
        doomed, living = {}, {}
        for kind, port in ports.items():
            for host, found in ((3, doomed), (1, living)):
                opener = KeepAlive(hosts.port, "127.0.0.141", hosts.addresses[host])
                status, body = opener.request("GET", None)
                opener.close()
                assert status == 200, (status, body)
                found[kind] = json.loads(body[1:])["sid"]
        victim = hosts.masters[3]
        master = psutil.Process(victim.pid)
        processes = [master, *master.children(recursive=True)]
        for process in processes:
            process.send_signal(signal.SIGKILL)
        psutil.wait_procs(processes, timeout=10)
        victim.proc.wait(10)

        for kind, port in ports.items():
            # a refused connection is tried again on a backup (nginx: the next upstream;
            # HAProxy: redispatch), which answers 400; a balancer may answer 502 or 503 itself
            # until it sees the host down: never a held request.
            answers = []
            wait_for(lambda: answers.append(polling(port, "GET", doomed[kind])) or
                     answers[-1][0] == 400, 30, what=f"{kind}: 400 for the dead host's session")
            assert {status for status, _body in answers} <= {400, 502, 503}, answers
            assert answers[-1][1].startswith('"Invalid session'), answers[-1]  # engineio's
            assert polling(port, "POST", living[kind], "40") == (200, "OK")
            status, body = polling(port, "GET", living[kind])
            assert status == 200 and body.startswith("40{"), (kind, status, body)
            for _ in range(6):
                status, body = polling(port, "GET", None)
                assert status == 200, (kind, status, body)
                assert sids.host_of(json.loads(body[1:])["sid"]) in (1, 2)
    finally:
        for balancer in balancers:
            balancer.stop()
    for host in (1, 2):
        assert "Traceback" not in hosts.masters[host].log, hosts.masters[host].log[-3000:]
