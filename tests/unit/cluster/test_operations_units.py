"""The pure parts of operating the cluster: the status server's parser, the metrics,
/healthz, the control socket's table, the access log's lines, systemd's variables."""
from __future__ import annotations

import json
import logging
import os
import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from cluster import Master
from cluster.ops import systemd
from cluster.ops.control_socket import describe
from cluster.ops.metrics import families
from cluster.ops.status_http import HEAD_LIMIT, Request, Response, parse_head, render
from cluster.ops.status_site import healthz
from cluster.setup.config import ConfigError
from prometheus_client.core import CollectorRegistry
from prometheus_client.exposition import generate_latest
from cluster.protocol.access_log_format import check_format
from workers.access_log import escape, format_line

FACTS = {
    "master": 100, "size": 2, "uptime": 12.5, "stopping": None, "rolling": False,
    "binds": ["127.0.0.1:5000"],
    "workers": [
        {"slot": 0, "pid": 101, "state": "serving", "sessions": 7, "uptime": 10.0,
         "heartbeat_age": 0.4, "restarts": 0},
        {"slot": 1, "pid": 102, "state": "serving", "sessions": 5, "uptime": 3.0,
         "heartbeat_age": 0.2, "restarts": 2},
        {"slot": 1, "pid": 99, "state": "draining", "sessions": 1, "uptime": 30.0,
         "heartbeat_age": 0.9, "restarts": 2},
    ],
    "workers_by_state": {"booting": 0, "serving": 2, "draining": 1},
    "adapter": "redis://app:***@10.0.0.5:6379/0",
    "handoffs": {"sid": 4, "handed_back": 3, "returned": 1, "least-loaded": 20, "ip": 0,
                 "random": 0, "rerouted": 1},
    "placement_skips": {"full": 2, "late": 1},
    "handbacks": {"placed": 9, "refused": 2}, "accept_pauses": 4,
    "connections": {"accepted": 25, "timed_out": 0, "refused": 0, "shed": 0, "held": 6,
                    "dropped": 0},
    "restarts": {"crash": 1, "timeout": 0, "hup": 1, "scale": 0},
    "relay": {"broadcast": 3, "unicast": 2, "dropped": 0, "bytes": 512},
    "pending": 0, "loop_lag": 0.0012, "rolls": {"started": 0, "finished": 0, "failure": None},
    "events": [],
}


# ------------------------------------------------------------------ status server


def test_parse_head_accepts_get_and_head():
    assert parse_head(b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n") == Request("GET", "/metrics")
    assert parse_head(b"HEAD / HTTP/1.0\n\n") == Request("HEAD", "/")


def test_parse_head_waits_for_the_end_of_the_head():
    assert parse_head(b"GET /metrics HTTP/1.1\r\nHost: a\r\n") is None


@pytest.mark.parametrize("head, status", [
    (b"POST /metrics HTTP/1.1\r\n\r\n", 405),
    (b"GET metrics HTTP/1.1\r\n\r\n", 400),
    (b"GET /metrics\r\n\r\n", 400),
    (b"\x16\x03\x01\x02\x00\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nX: " + b"y" * HEAD_LIMIT, 431),
])
def test_parse_head_rejects_bad_requests(head, status):
    answer = parse_head(head)
    assert isinstance(answer, Response) and answer.status == status


@given(st.binary(max_size=HEAD_LIMIT + 10))
def test_parse_head_never_raises(head):
    assert parse_head(head) is None or isinstance(parse_head(head), (Request, Response))


def test_render_closes_and_head_has_no_body():
    response = Response(200, "text/plain", b"hello")
    raw = render(response)
    assert raw.startswith(b"HTTP/1.1 200 OK\r\n") and raw.endswith(b"\r\n\r\nhello")
    assert b"Connection: close\r\n" in raw and b"Content-Length: 5\r\n" in raw
    assert render(response, head_only=True).endswith(b"\r\n\r\n")


# ------------------------------------------------------------ metrics and /healthz


def test_metrics_parse_with_prometheus_client():
    class Collector:
        def collect(self):
            return iter(families(FACTS))

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Collector())
    parsed = {f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())}
    sessions = {(s.labels["slot"], s.labels["pid"]): s.value
                for s in parsed["sticky_cluster_sessions"].samples}
    assert sessions == {("0", "101"): 7, ("1", "102"): 5, ("1", "99"): 1}
    assert {s.labels["state"]: s.value for s in parsed["sticky_cluster_workers"].samples} == {
        "booting": 0, "serving": 2, "draining": 1}
    assert parsed["sticky_cluster_handoffs"].type == "counter"
    assert totals(parsed["sticky_cluster_handoffs"], "reason") == {
        "sid": 4, "handed_back": 3, "returned": 1, "least-loaded": 20, "ip": 0, "random": 0,
        "rerouted": 1}
    assert totals(parsed["sticky_cluster_placement_skips"], "reason") == {"full": 2, "late": 1}
    assert totals(parsed["sticky_cluster_connections"], "outcome")["held"] == 6
    assert parsed["sticky_cluster_relay_bytes"].samples[0].value == 512
    assert parsed["sticky_cluster_loop_lag_seconds"].samples[0].value == 0.0012
    for name, value in [("sticky_cluster_handbacks_placed", 9),
                        ("sticky_cluster_handbacks_refused", 2),
                        ("sticky_cluster_accept_pauses", 4)]:
        assert parsed[name].type == "counter" and parsed[name].documentation, name
        assert [(s.name, s.value) for s in parsed[name].samples
                if s.name.endswith("_total")] == [(f"{name}_total", value)]


HOSTS_FACTS = {
    "host_id": 2, "advertise": "10.0.0.2:8000",
    "forwarder": {"pid": 120, "up": True, "respawns": 1, "connections": 3},
    "known": {"1": "10.0.0.1:8000", "2": "10.0.0.2:8000", "3": "10.0.0.3:8000"},
    "peers": {"1": {"requests": 40, "upgrades": 2, "bytes_in": 9000, "bytes_out": 7000,
                    "errors": 1, "forward_seconds": 0.05, "forwards": 40}},
    "refused": {"unknown_host": 5, "loop": 0, "unanswered": 1},
    "forwarded": 42, "held": 3, "handed_back": 4, "relayed_own": 17,
}


def test_metrics_say_the_hosts_with_several_hosts_only():
    def parse(facts):
        class Collector:
            def collect(self):
                return iter(families(facts))

        registry = CollectorRegistry(auto_describe=False)
        registry.register(Collector())
        return {f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())}

    assert not [name for name in parse(FACTS) if "host" in name or "forward" in name]
    parsed = parse({**FACTS, "hosts": HOSTS_FACTS})
    assert parsed["sticky_cluster_host_id"].samples[0].value == 2
    assert parsed["sticky_cluster_hosts_known"].samples[0].value == 3
    assert parsed["sticky_cluster_forwarder_up"].samples[0].value == 1
    assert totals(parsed["sticky_cluster_forwarded_requests"], "host") == {"1": 40}
    assert totals(parsed["sticky_cluster_forwarded_upgrades"], "host") == {"1": 2}
    assert {(s.labels["direction"], s.value) for s in parsed["sticky_cluster_forwarded_bytes"].samples
            if s.name.endswith("_total")} == {("in", 9000), ("out", 7000)}
    assert totals(parsed["sticky_cluster_forwards_refused"], "reason") == {
        "unknown_host": 5, "loop": 0, "unanswered": 1}
    assert totals(parsed["sticky_cluster_forwarder_connections"], "outcome") == {
        "sent": 42, "held": 3, "handed_back": 4}
    assert parsed["sticky_cluster_forwarder_relayed_own"].samples[0].value == 17


def test_hosts_facts_keep_numbers_only_from_the_forwarders_message():
    from cluster.ops.status import hosts_facts

    class Forwarder:
        link, up, respawns = None, False, 0
        hosts = {"hosts": {"1": "10.0.0.1:8000"}, "peers": {"1": {"requests": "x", "errors": 2},
                                                             "2": "junk"},
                 "refused": {"loop": True, "unanswered": 3}, "own": {"requests": 5}}

    master = Master("tests.apps.chat:sio", workers=2)
    facts = hosts_facts(1, "10.0.0.1:8000", Forwarder(), master._dispatcher)  # type: ignore[arg-type]
    assert facts["peers"] == {"1": {"requests": 0, "upgrades": 0, "bytes_in": 0, "bytes_out": 0,
                                    "errors": 2, "forward_seconds": 0, "forwards": 0}}
    assert facts["refused"] == {"unknown_host": 0, "loop": 0, "unanswered": 3}
    assert facts["relayed_own"] == 5
    assert facts["forwarder"] == {"pid": None, "up": False, "respawns": 0, "connections": 0}


def totals(family, label: str) -> dict[str, float]:
    """A parsed counter family's ``_total`` samples by ``label``."""
    return {s.labels[label]: s.value for s in family.samples if s.name.endswith("_total")}


def test_facts_count_each_handoff_once_by_reason():
    master = Master("tests.apps.chat:sio", workers=2, balance="random")
    dispatcher = master._dispatcher
    dispatcher.handed_off, dispatcher.by_sid, dispatcher.rerouted = 40, 15, 2
    dispatcher.handed_back, dispatcher.returned, dispatcher.held = 6, 1, 3
    dispatcher.past_full, dispatcher.past_late = 4, 5
    dispatcher.placed_back, dispatcher.not_sockets.count = 7, 2
    master._acceptor.out_of_files.count = 3
    facts = master.facts()
    assert facts["handoffs"] == {"sid": 8, "handed_back": 6, "returned": 1, "least-loaded": 0,
                                 "ip": 0, "random": 23, "rerouted": 2}
    assert sum(facts["handoffs"].values()) == dispatcher.handed_off
    assert facts["placement_skips"] == {"full": 4, "late": 5}
    assert facts["handbacks"] == {"placed": 7, "refused": 2} and facts["accept_pauses"] == 3
    assert facts["connections"]["held"] == 3
    by_ip = Master("tests.apps.chat:sio", route="ip")
    by_ip._dispatcher.handed_off = 5
    assert by_ip.facts()["handoffs"] == {"sid": 0, "handed_back": 0, "returned": 0,
                                         "least-loaded": 0, "ip": 5, "random": 0, "rerouted": 0}


def test_facts_never_show_a_password():
    url = "redis://app:s3cret-Pa55@10.0.0.5:6379/0"
    master = Master("tests.apps.chat:sio", workers=2, adapter=url)
    master._pool.rolls["failure"] = (1, "the app is broken: no postgresql://db:pg-Pa55@db/app")
    event = logging.LogRecord("sticky_cluster.master", logging.ERROR, __file__, 1,
                              "broker %s said: bad password s3cret-Pa55", (url,), None)
    master._events.filter(event)
    facts = master.facts()
    shown = json.dumps(facts)
    assert "s3cret-Pa55" not in shown and "pg-Pa55" not in shown
    assert facts["adapter"] == "redis://app:***@10.0.0.5:6379/0"
    assert facts["rolls"]["failure"] == (1, "the app is broken: no postgresql://db:***@db/app")
    assert facts["events"][-1]["message"] == (
        "broker redis://app:***@10.0.0.5:6379/0 said: bad password ***")
    assert Master("tests.apps.chat:sio").facts()["adapter"] is None
    in_query = Master("tests.apps.chat:sio", adapter="redis://h:6379/0?db=0&password=q-Pa55")
    assert in_query.facts()["adapter"] == "redis://h:6379/0?db=0&password=***"


def test_healthz_is_200_while_a_worker_serves():
    assert healthz(FACTS).status == 200
    none = {**FACTS, "workers_by_state": {"booting": 2, "serving": 0, "draining": 0}}
    assert healthz(none) == Response(503, "text/plain; charset=utf-8",
                                     b"unavailable: no worker serves\n")
    assert healthz({**FACTS, "stopping": "graceful"}).status == 503


def test_status_table_lists_every_worker():
    table = describe(FACTS)
    lines = table.splitlines()
    assert lines[0] == "master 100: 2 workers, 13 sessions, up 12 s"
    assert len(lines) == 2 + 3
    assert lines[2].split()[:4] == ["0", "101", "serving", "7"]
    assert lines[3].split()[:4] == ["1", "102", "serving", "5"]  # the newest of a slot first
    assert lines[4].split()[:4] == ["1", "99", "draining", "1"]


# ----------------------------------------------------------------------- access log


ENVIRON = {"REMOTE_ADDR": "127.0.0.5", "REQUEST_METHOD": "GET", "PATH_INFO": "/socket.io/",
           "QUERY_STRING": "EIO=4&transport=websocket&sid=abc", "SERVER_PROTOCOL": "HTTP/1.1",
           "HTTP_USER_AGENT": "ua"}


def test_access_line_in_gunicorn_style():
    line = format_line("%(h)s \"%(r)s\" %(s)s %(b)s %(a)s %(slot)s %(transport)s %(M)s",
                       ENVIRON, "101", None, 0.0, 0.25, 3)
    assert line == ('127.0.0.5 "GET /socket.io/?EIO=4&transport=websocket&sid=abc HTTP/1.1" '
                    '101 - ua 3 websocket 250')


def test_access_line_escapes_what_the_client_sent():
    environ = {**ENVIRON, "PATH_INFO": "/a\nb\"c\\", "HTTP_USER_AGENT": "x\r\x1b[31m"}
    line = format_line("%(U)s %(a)s", environ, "200", 0, 0.0, 0.0, 0)
    assert line == '/a\\x0ab\\"c\\\\ x\\x0d\\x1b[31m'
    assert "\n" not in line


@given(st.text())
def test_escape_leaves_no_control_characters(value):
    assert not any(ord(c) < 0x20 or ord(c) == 0x7F for c in escape(value))


def test_check_format_names_the_unknown_atom():
    assert check_format("%(h)s %(slot)s") == "%(h)s %(slot)s"
    with pytest.raises(ValueError, match=r"unknown atom %\(x\)s"):
        check_format("%(h)s %(x)s")
    with pytest.raises(ValueError):
        check_format("%(h)")


# -------------------------------------------------------------------------- systemd


def test_notifier_sends_datagrams_and_watchdogs(tmp_path, monkeypatch):
    path = str(tmp_path / "notify")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(path)
    server.settimeout(5)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")
    notifier = systemd.Notifier()
    try:
        assert "NOTIFY_SOCKET" not in os.environ and notifier.watchdog_interval == 1.0
        notifier.ready("2 workers")
        assert server.recv(100) == b"READY=1\nSTATUS=2 workers"
        notifier.status("2 workers")  # unchanged: not sent again
        notifier.tick(100.0)
        assert server.recv(100) == b"WATCHDOG=1"
        notifier.tick(100.5)  # not due yet
        notifier.stopping()
        assert server.recv(100) == b"STOPPING=1"
    finally:
        notifier.close()
        server.close()


def test_notifier_without_systemd_does_nothing(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = systemd.Notifier()
    assert not notifier.enabled
    notifier.ready("x")  # no error


def test_listen_fds_for_another_process_are_ignored(monkeypatch):
    monkeypatch.setenv("LISTEN_FDS", "1")
    monkeypatch.setenv("LISTEN_PID", str(os.getpid() + 1))
    assert systemd.inherited_listeners() == []
    assert "LISTEN_FDS" not in os.environ


def test_listen_fds_that_are_not_listeners_are_one_line(monkeypatch):
    plain = socket.socket()  # not listening
    saved = os.dup(3)
    os.dup2(plain.fileno(), 3)
    monkeypatch.setenv("LISTEN_FDS", "1")
    monkeypatch.setenv("LISTEN_PID", str(os.getpid()))
    try:
        with pytest.raises(ConfigError, match="fd 3 is not a listening stream socket"):
            systemd.inherited_listeners()
    finally:
        os.dup2(saved, 3)
        os.close(saved)
        plain.close()


def test_check_files_says_why_a_file_cannot_be_written(tmp_path):
    from cluster.setup.config import make_settings
    from cluster.setup.preflight import ClusterError, check_files

    check_files(make_settings("app:sio", log_file=str(tmp_path / "new.log"),
                              pid_file=str(tmp_path / "master.pid")))
    with pytest.raises(ClusterError, match=f"cannot write the log file {tmp_path}: it is a directory"):
        check_files(make_settings("app:sio", log_file=str(tmp_path)))
    with pytest.raises(ClusterError, match=f"cannot write the pid file {tmp_path}/no/master.pid: "
                                           f"no directory {tmp_path}/no"):
        check_files(make_settings("app:sio", pid_file=str(tmp_path / "no" / "master.pid")))


def test_requests_served_together_share_one_snapshot_and_one_rendering():
    from cluster.ops.status_site import site

    taken = []
    respond, snapshot = site(lambda: taken.append(1) or {**FACTS, "taken": len(taken)})
    with snapshot.held():
        first = [respond(path) for path in ("/metrics", "/status", "/healthz", "/metrics")]
    assert len(taken) == 1 and first[0] is first[3]
    respond("/status")
    respond("/status")
    assert len(taken) == 3  # alone, each request gets the facts as they are
