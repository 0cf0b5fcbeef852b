"""Polling-only clients over three hosts: a plain round-robin balancer against the sid-aware one.

    python -m bench.balancer_polling [--clients 30] [--seconds 12] [--windows 6] [--workers 1]

Starts three masters (``bench.app:sio``) on 127.0.0.11, .12 and .13 joined by ``--peers``,
and two real nginx in front of all three, in the same run:

* **round-robin**: upstream keep-alive, no notion of sessions, as most balancers are: two
  requests in three land on a host that does not hold their session, whose forwarder
  relays them to the one that does;
* **by-sid**: the configuration ``sticky-cluster balancer nginx`` prints, which sends each
  request with a sid straight to its host (no forward).

``--clients`` polling-only Socket.IO clients on each balancer (each on its own kept-alive
connection from its own loopback address; their sessions spread evenly over the three
hosts through both balancers, as clients arriving at random would be) are each a closed
loop: an event with an ack (``whoami``) POSTed, then GETs until the ack is there, again. Windows of each balancer
in turn (round-robin, by-sid, by-sid, round-robin, …: load from outside the run falls on
both), ``--seconds`` per balancer in all. Prints one JSON line: acks per second through
each, their ratio against the issue's target (round-robin ≥ 0.7× by-sid), the
connections the masters handed to their forwarders (0 expected through by-sid), and the
CPU milliseconds the hosts' masters, workers and forwarders spent per ack through each
(``cpu_ms_per_ack``: where the round-robin's extra cost goes).

Loopback only; every process started is stopped by its PID.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil

from cluster.hosts.balancer import Listen, generate
from cluster.protocol.sids import host_of

from .forward_cost import STATUS_PORTS, Http, free_port, start_hosts, stop_hosts
from .targets import stop_process, wait_port

HOSTS = {1: "127.0.0.11", 2: "127.0.0.12", 3: "127.0.0.13"}
TARGET_RATIO = 0.7

WORKER_RLIMIT_NOFILE = 20_000
"""The fds of each nginx worker: the hard limit per process here (not raisable)."""

WORKER_CONNECTIONS = 19_000
"""Connections of each nginx worker, clients' and upstream ones together (a proxied client
takes two): its fds, less room for its own files."""

NGINX_WRAPPER = """\
worker_processes {workers};
worker_rlimit_nofile {nofile};
worker_shutdown_timeout 3s;  # a stop closes the websockets left instead of waiting for them
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log error;
events {{ worker_connections {connections}; }}
http {{
    access_log off;
    keepalive_requests 1000000;  # a client connection lasts the run (nginx closes it after 1,000 by default)
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
{http}
}}
"""


def round_robin(hosts: dict[int, tuple[str, int]], port: int, reuseport: bool = False,
                sources: int = 0) -> str:
    """A plain round-robin nginx over ``hosts``, with upstream keep-alive (and websocket
    upgrades passed on). ``reuseport``: a listening socket per nginx worker, among which the
    kernel spreads the connections (without it, one worker may accept most of them).
    ``sources``: connect to the hosts from that many addresses (127.1.0.1, …) instead of
    one: one address has 28,232 ephemeral ports per host, which tens of thousands of
    websockets and the TIME_WAITs of a storm use up (``connect() failed (99: Cannot assign
    requested address)``, and nginx then takes the live hosts for dead: ``no live
    upstreams`` for its ``fail_timeout``, 10 s)."""
    servers = "\n".join(f"        server {ip}:{host_port};" for ip, host_port in hosts.values())
    listen = f"127.0.0.1:{port}" + (" reuseport" if reuseport else "")
    bind = ""
    if sources:
        shares = "\n".join(f"        {100 / sources:.2f}% 127.1.0.{i + 1};"
                           for i in range(sources - 1))
        bind = (f'    split_clients "$remote_addr$remote_port" $upstream_source {{\n{shares}\n'
                f"        * 127.1.0.{sources};\n    }}\n")
    return f"""\
    map $http_upgrade $connection_upgrade {{
        default upgrade;
        '' '';
    }}
{bind}    upstream hosts {{
{servers}
        keepalive 16;
    }}
    server {{
        listen {listen};
        location / {{
            proxy_pass http://hosts;
            proxy_http_version 1.1;
            proxy_set_header Host $http_host;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_read_timeout 1h;{"" if not sources else chr(10) + "            proxy_bind $upstream_source;"}
        }}
    }}"""


def nginx_conf(prefix: str, http: str, workers: int = 1) -> str:
    """The whole nginx.conf of an nginx with ``workers`` worker processes, serving the
    ``http {}`` content ``http`` from ``prefix``."""
    return NGINX_WRAPPER.format(prefix=prefix, http=http, workers=workers,
                                nofile=WORKER_RLIMIT_NOFILE, connections=WORKER_CONNECTIONS)


class Nginx:
    """One nginx serving the ``http {}`` content ``http`` from a prefix of its own, with
    ``workers`` worker processes (give the listen ``reuseport`` when there are several)."""

    def __init__(self, http: str, workers: int = 1) -> None:
        self.prefix = tempfile.mkdtemp(prefix="bench-balancer-")
        conf = Path(self.prefix, "nginx.conf")
        conf.write_text(nginx_conf(self.prefix, http, workers))
        self.proc = subprocess.Popen(["nginx", "-p", self.prefix, "-c", str(conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> None:
        stop_process(self.proc, signal.SIGQUIT)
        shutil.rmtree(self.prefix, ignore_errors=True)


class PollingClient:
    """A polling-only Socket.IO client on its own kept-alive connection."""

    def __init__(self, http: Http) -> None:
        self.http = http
        self.session = ""
        self.acks = 0

    @property
    def target(self) -> str:
        """The session's polling URL with a new ``t`` each time, as the official clients
        send it (engine.io-client's ``timestampRequests``, python-engineio's
        ``timestamp_requests``, both on by default): no two request heads are alike."""
        return f"{self.session}&t={secrets.token_urlsafe(6)}"

    @classmethod
    async def connect(cls, port: int, source: str) -> "PollingClient":
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
        client = cls(Http(reader, writer))
        opened = await client.http.request("GET", "/socket.io/?EIO=4&transport=polling")
        sid = json.loads(opened[opened.index(b"{"):])["sid"]
        client.session = f"/socket.io/?EIO=4&transport=polling&sid={sid}"
        await client.http.request("POST", client.target, b"40")
        while b"40{" not in await client.get():
            pass
        return client

    async def get(self) -> bytes:
        """One GET; a ping in it is answered."""
        body = await self.http.request("GET", self.target)
        if b"2" in body.split(b"\x1e"):
            await self.http.request("POST", self.target, b"3")
        return body

    async def loop(self, stop: float) -> int:
        """Ack round trips until ``stop``; how many."""
        done = 0
        while time.monotonic() < stop:
            ack = self.acks = self.acks + 1
            await self.http.request("POST", self.target, f'42{ack}["whoami"]'.encode())
            while f"43{ack}[".encode() not in await self.get():
                pass
            done += 1
        return done


def forwarded() -> int:
    """Connections the masters have handed to their forwarders so far (``/status``)."""
    total = 0
    for host, port in STATUS_PORTS.items():
        with urllib.request.urlopen(f"http://{HOSTS[host]}:{port}/status", timeout=5) as answer:
            total += json.load(answer)["hosts"]["forwarded"]
    return total


async def spread_client(port: int, index: int) -> PollingClient:
    """Client ``index``, its session on host ``index % 3 + 1``: both balancers place new
    sessions round robin, and every client's connect takes the same number of requests,
    so without this every session would land on one host through the round-robin nginx
    (and on three through the sid-aware one: two different loads). A session on another
    host is left (it times out) and one more request moves the balancer's turn on."""
    wanted = sorted(HOSTS)[index % len(HOSTS)]
    for _attempt in range(3 * len(HOSTS)):
        client = await PollingClient.connect(port, f"127.0.1.{index + 1}")
        if host_of(client.session.rpartition("sid=")[2]) == wanted:
            return client
        client.http.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: bench\r\n"
                     b"Connection: close\r\n\r\n")
        await reader.read()
        writer.close()
    raise RuntimeError(f"no session on host {wanted} through the balancer on port {port}")


ROLES = ("masters", "workers", "forwarders")
"""The hosts' processes whose CPU time per ack the result gives, by role."""


def role_of(process: psutil.Process) -> str:
    """A host process's role (one of :data:`ROLES`), from its title."""
    title = " ".join(process.cmdline())
    if "forwarder" in title:
        return "forwarders"
    return "workers" if "worker" in title else "masters"


def cpu_by_role(masters: list[int]) -> dict[str, float]:
    """CPU seconds (user + system) the hosts' processes have spent so far, by role."""
    spent = dict.fromkeys(ROLES, 0.0)
    for master in masters:
        try:
            tree = psutil.Process(master)
            processes = [tree, *tree.children(recursive=True)]
        except psutil.Error:
            continue
        for process in processes:
            try:
                times = process.cpu_times()
                spent[role_of(process)] += times.user + times.system
            except psutil.Error:  # it ended meanwhile
                pass
    return spent


async def measure(balancers: dict[str, int], args: argparse.Namespace,
                  masters: list[int]) -> dict:
    clients = {name: [await spread_client(port, index) for index in range(args.clients)]
               for name, port in balancers.items()}
    totals = {name: {"acks": 0, "seconds": 0.0, "forwarded": 0,
                     "cpu": dict.fromkeys(ROLES, 0.0)} for name in balancers}
    for window in range(2 * args.windows):
        name = sorted(balancers, reverse=window // 2 % 2 == 1)[window % 2]
        before, cpu_before = forwarded(), cpu_by_role(masters)
        started = time.monotonic()
        done = await asyncio.gather(*(client.loop(started + args.seconds / args.windows)
                                      for client in clients[name]))
        totals[name]["seconds"] += time.monotonic() - started
        totals[name]["acks"] += sum(done)
        totals[name]["forwarded"] += forwarded() - before
        for role, seconds in cpu_by_role(masters).items():
            totals[name]["cpu"][role] += seconds - cpu_before[role]
    for group in clients.values():
        for client in group:
            client.http.close()
    result: dict = {name: {"acks": total["acks"], "seconds": round(total["seconds"], 3),
                           "acks_per_s": round(total["acks"] / total["seconds"], 1),
                           "forwarded_connections": total["forwarded"],
                           "cpu_ms_per_ack": {role: round(1000 * seconds / max(total["acks"], 1), 3)
                                              for role, seconds in total["cpu"].items()}}
                    for name, total in totals.items()}
    result["ratio"] = round(result["round-robin"]["acks_per_s"] / result["by-sid"]["acks_per_s"], 3)
    result["target_ratio_at_least_0.7"] = result["ratio"] >= TARGET_RATIO
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.balancer_polling",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=30, help="polling clients per balancer")
    parser.add_argument("--seconds", type=float, default=12.0,
                        help="seconds of load through each balancer, all windows together")
    parser.add_argument("--windows", type=int, default=6, help="windows of each balancer")
    parser.add_argument("--workers", type=int, default=1, help="workers of each host")
    args = parser.parse_args(argv)
    if shutil.which("nginx") is None:
        print("bench.balancer_polling: nginx is not installed", file=sys.stderr)
        return 2
    ports, procs, logs = start_hosts(args.workers, HOSTS, status=True)
    servers: list[Nginx] = []
    try:
        hosts = {host: (HOSTS[host], port) for host, port in ports.items()}
        balancers = {"round-robin": free_port("127.0.0.1"), "by-sid": free_port("127.0.0.1")}
        servers.append(Nginx(round_robin(hosts, balancers["round-robin"])))
        servers.append(Nginx(generate("nginx", hosts, Listen(balancers["by-sid"], "127.0.0.1"))))
        for port in balancers.values():
            wait_port(port)
        result = asyncio.run(measure(balancers, args, [proc.pid for proc in procs]))
        result.update(workers=args.workers, clients=args.clients, hosts=len(HOSTS))
        print(json.dumps(result))
    finally:
        for server in servers:
            server.stop()
        stop_hosts(procs, logs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
