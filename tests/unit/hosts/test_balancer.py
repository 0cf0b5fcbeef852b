"""The sid-aware balancer configurations (:mod:`cluster.hosts.balancer`), read back as the
balancer would route: every sid a host makes reaches that host's address and no other, a
request without a sid (a new session) may reach every host. The real nginx and haproxy
check the same text: tests/e2e/test_balancer_configs.py; they route with it:
tests/e2e/test_hosts_behind_balancers.py."""
from __future__ import annotations

import re

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from cluster.cli.cli import main
from cluster.hosts.addresses import Address
from cluster.hosts.balancer import BalancerError, Listen, generate, parse_listen
from cluster.protocol import sids
from tests.support.pages import page

THREE = {1: ("10.0.0.11", 5000), 2: ("10.0.0.12", 5000), 3: ("10.0.0.13", 5000)}


def blocks(text: str, opener: str) -> dict[str, list[str]]:
    """The inner lines (stripped) of each nginx block ``opener NAME… {``, by NAME…."""
    found = {}
    for match in re.finditer(rf"^\s*{opener} ([^{{\n]+?) \{{\n(.*?)^\s*\}}", text, re.S | re.M):
        found[match[1]] = [line.strip() for line in match[2].splitlines() if line.strip()]
    return found


def nginx_route(text: str, sid: str | None) -> set[str]:
    """The servers nginx may send a request with ``sid`` (None: no sid) to, per the config."""
    (routes,) = [lines for name, lines in blocks(text, "map").items()
                 if name.split()[0] == "$arg_sid"]
    upstreams = blocks(text, "upstream")
    chosen = None
    for line in routes:
        key, value = line.rstrip(";").split()
        if key.startswith("~") and sid is not None and re.search(key[1:], sid):
            chosen = value  # nginx takes the first regex that matches
            break
    if chosen is None:
        chosen = next(line.rstrip(";").split()[1] for line in routes
                      if line.startswith("default "))
    assert "proxy_pass http://$sticky_cluster_upstream;" in text
    return {line.split()[1].rstrip(";") for line in upstreams[chosen]
            if line.startswith("server ") and not line.endswith(" backup;")}


def nginx_backups(text: str, host_id: int) -> list[str]:
    """The servers that stand in for host ``host_id`` while it is down."""
    return [line.split()[1] for line in blocks(text, "upstream")[f"sticky_cluster_host_{host_id}"]
            if line.startswith("server ") and line.endswith(" backup;")]


def haproxy_sections(text: str) -> dict[str, list[str]]:
    """Each HAProxy section ("frontend NAME", "backend NAME", "defaults") -> its lines."""
    sections: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line.startswith(" "):
            current = line.strip()
            sections[current] = []
        else:
            sections[current].append(line.strip())
    return sections


def haproxy_route(text: str, sid: str | None) -> set[str]:
    """The servers HAProxy may send a request with ``sid`` to, per the config."""
    sections = haproxy_sections(text)
    (frontend,) = [lines for name, lines in sections.items() if name.startswith("frontend ")]
    chosen = None
    for line in frontend:
        rule = re.fullmatch(r"use_backend (\S+) if \{ url_param\(sid\) -m beg (\S+) \}", line)
        if rule and sid is not None and sid.startswith(rule[2]):
            chosen = rule[1]
            break
    if chosen is None:
        chosen = next(line.split()[1] for line in frontend if line.startswith("default_backend "))
    return {line.split()[2] for line in sections[f"backend {chosen}"]
            if line.startswith("server ") and not line.endswith(" backup")}


def haproxy_backups(text: str, host_id: int) -> list[str]:
    """The servers that stand in for host ``host_id`` while it is down."""
    section = haproxy_sections(text)[f"backend sticky_cluster_host_{host_id}"]
    return [line.split()[2] for line in section
            if line.startswith("server ") and line.endswith(" backup")]


ROUTERS = {"nginx": nginx_route, "haproxy": haproxy_route}


def a_sid(host: int, tag: int = 1) -> str:
    return sids.sid_prefix(tag, host) + "x" * (sids.SID_LENGTH - sids.PREFIX_CHARS)


def shown(address: Address) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@pytest.mark.parametrize("kind", ["nginx", "haproxy"])
def test_each_hosts_sids_go_to_its_address_and_new_sessions_to_all(kind):
    text = generate(kind, THREE)
    for host_id, address in THREE.items():
        for tag in (1, 2, 4095, sids.TAG_LIMIT - 1):
            assert ROUTERS[kind](text, a_sid(host_id, tag)) == {shown(address)}
    every = {shown(address) for address in THREE.values()}
    assert ROUTERS[kind](text, None) == every
    assert ROUTERS[kind](text, "") == every
    assert ROUTERS[kind](text, a_sid(0)) == every  # a host alone's sid: no host of these


hosts_strategy = st.dictionaries(
    st.integers(1, sids.HOST_LIMIT - 1),
    st.tuples(st.sampled_from(["10.0.0.1", "10.0.0.2", "node-a.example", "::1", "fd00::7"]),
              st.integers(1, 65535)),
    min_size=1, max_size=12)


@given(hosts=hosts_strategy, kind=st.sampled_from(["nginx", "haproxy"]))
def test_any_directory_routes_every_sid_to_its_own_host(hosts, kind):
    text = generate(kind, hosts)
    for host_id, address in hosts.items():
        assert ROUTERS[kind](text, a_sid(host_id)) == {shown(address)}
    assert ROUTERS[kind](text, None) == {shown(address) for address in hosts.values()}


BACKUPS = {"nginx": nginx_backups, "haproxy": haproxy_backups}


@pytest.mark.parametrize("kind", ["nginx", "haproxy"])
def test_the_next_two_hosts_stand_in_for_a_host_that_is_down(kind):
    """Backups answer a dead host's sessions 400 (the client reconnects) rather than the
    balancer 502: up to two, the next hosts in turn, never the host itself."""
    four = {**THREE, 9: ("10.0.0.19", 5000)}
    text = generate(kind, four)
    assert {host: BACKUPS[kind](text, host) for host in four} == {
        1: ["10.0.0.12:5000", "10.0.0.13:5000"], 2: ["10.0.0.13:5000", "10.0.0.19:5000"],
        3: ["10.0.0.19:5000", "10.0.0.11:5000"], 9: ["10.0.0.11:5000", "10.0.0.12:5000"]}
    two = generate(kind, {1: THREE[1], 2: THREE[2]})
    assert BACKUPS[kind](two, 1) == ["10.0.0.12:5000"]
    assert BACKUPS[kind](two, 2) == ["10.0.0.11:5000"]
    assert BACKUPS[kind](generate(kind, {5: THREE[1]}), 5) == []


def test_hosts_that_share_a_first_character_stay_apart():
    hosts = {1: ("10.0.0.1", 80), 65: ("10.0.0.65", 80), 64: ("10.0.0.64", 80)}
    assert [sids.encode_host(i) for i in (1, 64, 65)] == ["AB", "BA", "BB"]
    for kind, route in ROUTERS.items():
        text = generate(kind, hosts)
        assert {i: route(text, a_sid(i)) for i in hosts} == {
            i: {shown(address)} for i, address in hosts.items()}


def test_nginx_speaks_websocket_and_keeps_upstream_connections():
    text = generate("nginx", THREE)
    assert "map $http_upgrade $sticky_cluster_connection {" in text
    for line in ("proxy_http_version 1.1;", "proxy_set_header Upgrade $http_upgrade;",
                 "proxy_set_header Connection $sticky_cluster_connection;",
                 "proxy_read_timeout 1h;", "listen 80;"):
        assert line in text
    assert all(any(line.startswith("keepalive ") for line in lines)
               for lines in blocks(text, "upstream").values())
    assert "least_conn;" not in text
    assert "    least_conn;" in generate("nginx", THREE, balance="least-conn")


def test_nginx_full_is_a_whole_file_around_the_same_snippet():
    snippet = generate("nginx", THREE).splitlines()
    full = generate("nginx", THREE, full=True).splitlines()
    assert full[1:5] == ["worker_processes auto;", "events {", "    worker_connections 4096;", "}"]
    assert full[5] == "http {" and full[-1] == "}"
    assert [line[4:] for line in full[6:-1]] == snippet[1:]


@pytest.mark.parametrize("kind", ["nginx", "haproxy"])
def test_without_keepalive_no_connection_carries_two_clients(kind):
    text = generate(kind, THREE, keepalive=False)
    assert "keepalive" not in text and "http-reuse safe" not in text
    if kind == "haproxy":
        backends = [lines for name, lines in haproxy_sections(text).items()
                    if name.startswith("backend ")]
        assert all("http-reuse never" in lines for lines in backends)
    for host_id, address in THREE.items():
        assert ROUTERS[kind](text, a_sid(host_id)) == {shown(address)}


def test_haproxy_tunnels_websockets_and_reuses_connections():
    sections = haproxy_sections(generate("haproxy", THREE, Listen(8080, "127.0.0.1")))
    assert "timeout tunnel 1h" in sections["defaults"] and "mode http" in sections["defaults"]
    assert "bind 127.0.0.1:8080" in sections["frontend sticky_cluster"]
    backends = [lines for name, lines in sections.items() if name.startswith("backend ")]
    assert len(backends) == 4 and all("http-reuse safe" in lines for lines in backends)
    assert "balance roundrobin" in sections["backend sticky_cluster_all"]
    least = haproxy_sections(generate("haproxy", THREE, balance="least-conn"))
    assert "balance leastconn" in least["backend sticky_cluster_all"]
    assert "bind :80" in least["frontend sticky_cluster"]


@pytest.mark.parametrize("text, listen", [
    ("80", Listen(80)), ("127.0.0.1:8080", Listen(8080, "127.0.0.1")),
    ("[::1]:443", Listen(443, "::1")), ("lb.example:80", Listen(80, "lb.example"))])
def test_listen_takes_a_port_or_an_address(text, listen):
    assert parse_listen(text) == listen


@pytest.mark.parametrize("text", ["", "0", "65536", "http", "::1:80", "[::1]", "host:", ":80"])
def test_a_bad_listen_is_one_line(text):
    with pytest.raises(BalancerError) as caught:
        parse_listen(text)
    assert "\n" not in str(caught.value) and "--listen" in str(caught.value)


@pytest.mark.parametrize("kind, hosts, balance, says", [
    ("traefik", THREE, "round-robin", "unknown balancer 'traefik'"),
    ("nginx", {}, "round-robin", "the directory of hosts is empty"),
    ("haproxy", THREE, "source", "unknown --balance 'source'"),
    ("nginx", {0: ("10.0.0.1", 80)}, "round-robin", "bad host id 0"),
    ("nginx", {4096: ("10.0.0.1", 80)}, "round-robin", "bad host id 4096"),
])
def test_bad_input_is_refused_in_one_line(kind, hosts, balance, says):
    with pytest.raises(BalancerError) as caught:
        generate(kind, hosts, balance=balance)
    assert str(caught.value).startswith(says) and "\n" not in str(caught.value)


# ------------------------------------------------------------------ the command line

def command_line(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["balancer", *args], env={"STICKY_CLUSTER_ADAPTER": None,
                                                                 "STICKY_CLUSTER_PEERS": None})
    return result.exit_code, result.stdout, result.stderr


def test_the_command_prints_the_configuration_of_its_peers():
    code, out, _err = command_line("haproxy", "--peers", "1=10.0.0.11:5000,2=10.0.0.12:5000,"
                                                    "3=10.0.0.13:5000", "--listen", "8080")
    assert code == 0 and out == generate("haproxy", THREE, Listen(8080))
    code, out, _err = command_line("nginx", "--peers", "2=10.0.0.12:5000", "--full",
                              "--balance", "least-conn", "--no-keepalive")
    assert code == 0 and out == generate("nginx", {2: THREE[2]}, balance="least-conn", full=True,
                                         keepalive=False)


@pytest.mark.parametrize("args, says", [
    (["apache", "--peers", "1=10.0.0.1:80"], "Error: unknown balancer 'apache': expected one of "
                                             "nginx, haproxy"),
    (["nginx", "--peers", "1=10.0.0.1"], "Error: --peers: bad address '10.0.0.1': expected "
                                         "HOST:PORT or [IPv6]:PORT"),
    (["nginx", "--peers", "x=10.0.0.1:80"], "Error: --peers: bad host id 'x': a number from 1 "
                                            "to 4095"),
    (["nginx"], "Error: say where the directory of hosts is: --adapter URL (the masters' Redis) "
                "or --peers ID=HOST:PORT,…"),
    (["nginx", "--adapter", "amqp://guest:s3cret@mq/"], "Error: --adapter amqp://guest:***@mq/ "
                                                        "cannot carry the directory of hosts: "
                                                        "give --peers ID=HOST:PORT,…"),
    (["nginx", "--adapter", "kafka://mq/"], "Error: "),
    (["nginx", "--peers", "1=10.0.0.1:80", "--listen", "x"], "Error: bad --listen 'x'"),
    (["nginx", "--peers", "1=10.0.0.1:80", "--balance", "ip"], "Error: unknown --balance 'ip'"),
])
def test_bad_input_to_the_command_is_one_line_and_a_failure(args, says):
    code, out, err = command_line(*args)
    assert code == 1 and out == ""
    assert err.startswith(says) and err.count("\n") == 1, err
    assert "s3cret" not in err


def test_the_docs_show_what_the_command_prints():
    """Each configuration the docs show as printed by ``sticky-cluster balancer`` is what the
    command line in the block above it prints today."""
    blocks = re.findall(r"^```(\w*)\n(.*?)^```\n", page("adapters"), re.S | re.M)
    shown = [(blocks[index - 1][1], text) for index, (_lang, text) in enumerate(blocks)
             if text.startswith("# generated by sticky-cluster balancer ")]
    assert [command.split()[:3] for command, _text in shown] == [
        ["sticky-cluster", "balancer", "nginx"], ["sticky-cluster", "balancer", "haproxy"]]
    for command, text in shown:
        code, out, err = command_line(*command.split()[2:])
        assert code == 0, err
        assert out == text, f"the docs show another configuration than {command.strip()!r} prints"
