"""The Prometheus exposition of the master's facts (``GET /metrics`` on ``--status-bind``).

Built, on each scrape, from :meth:`cluster.Master.facts` — the figures the workers
report in their heartbeats and the counters the master keeps where the events happen —
in ``prometheus_client``'s text format. Nothing is polled and nothing is kept here.
"""
from __future__ import annotations

from typing import Callable, Iterator

from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The classic text format: what ``generate_latest`` writes, and every Prometheus reads."""


class _FactsCollector:
    def __init__(self, facts: Callable[[], dict]) -> None:
        self._facts = facts

    def collect(self) -> Iterator[Metric]:
        return iter(families(self._facts()))


def exposition(facts: Callable[[], dict]) -> Callable[[], bytes]:
    """A function that renders ``facts()`` as Prometheus text, each time it is called."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_FactsCollector(facts))  # type: ignore[arg-type]
    return lambda: generate_latest(registry)


def families(facts: dict) -> list[Metric]:
    """The metric families for one snapshot of the master's facts (pure)."""
    per_worker = ["slot", "pid"]
    sessions = GaugeMetricFamily(
        "sticky_cluster_sessions", "Engine.IO sessions a worker holds (websocket and polling), "
        "from its last heartbeat", labels=per_worker)
    heartbeat = GaugeMetricFamily(
        "sticky_cluster_worker_heartbeat_age_seconds", "Seconds since a worker's last message",
        labels=per_worker)
    uptime = GaugeMetricFamily("sticky_cluster_worker_uptime_seconds",
                               "Seconds since a worker was forked", labels=per_worker)
    for worker in facts["workers"]:
        labels = [str(worker["slot"]), str(worker["pid"])]
        sessions.add_metric(labels, worker["sessions"])
        heartbeat.add_metric(labels, worker["heartbeat_age"])
        uptime.add_metric(labels, worker["uptime"])
    states = GaugeMetricFamily("sticky_cluster_workers", "Worker processes by state",
                               labels=["state"])
    for state, count in facts["workers_by_state"].items():
        states.add_metric([state], count)
    return [
        *_hosts_families(facts.get("hosts")),
        sessions, states, heartbeat, uptime,
        GaugeMetricFamily("sticky_cluster_workers_wanted", "Workers the master runs (its size)",
                          value=facts["size"]),
        _counter("sticky_cluster_handoffs", "Connections handed to a worker, by why that worker "
                 "(sid: its session's; handed_back/returned: a worker handed it back; "
                 "least-loaded/random/ip: placed; rerouted: its first choice could not take it)",
                 "reason", facts["handoffs"]),
        _counter("sticky_cluster_placement_skips", "Placements that passed over a worker that "
                 "was full (--worker-connections) or late (missed heartbeats)",
                 "reason", facts["placement_skips"]),
        _counter("sticky_cluster_connections", "Connections accepted, and what befell some "
                 "(refused: bad PROXY header; shed: a new session answered 503, every worker "
                 "late or full; held: waited for a worker; dropped: no worker could take it)",
                 "outcome", facts["connections"]),
        CounterMetricFamily("sticky_cluster_handbacks_placed", "Hand-backs of a request that "
                            "starts a new session (another tab on a kept-alive connection), "
                            "placed as a new connection is (in sticky_cluster_handoffs too)",
                            value=facts["handbacks"]["placed"]),
        CounterMetricFamily("sticky_cluster_handbacks_refused", "Hand-backs closed, not passed "
                            "on: the file a worker handed back was not a stream socket",
                            value=facts["handbacks"]["refused"]),
        CounterMetricFamily("sticky_cluster_accept_pauses", "Pauses of accepting for want of "
                            "file descriptors (EMFILE/ENFILE: ulimit -n)",
                            value=facts["accept_pauses"]),
        _counter("sticky_cluster_restarts", "Workers replaced, by reason", "reason",
                 facts["restarts"]),
        _counter("sticky_cluster_relay_messages", "Pub/sub messages relayed by the master",
                 "kind", {k: v for k, v in facts["relay"].items() if k != "bytes"}),
        CounterMetricFamily("sticky_cluster_relay_bytes", "Pub/sub payload bytes relayed",
                            value=facts["relay"]["bytes"]),
        GaugeMetricFamily("sticky_cluster_pending_connections",
                          "Connections waiting for their first bytes before routing",
                          value=facts["pending"]),
        GaugeMetricFamily("sticky_cluster_loop_lag_seconds", "Longest turn of the master's loop "
                          "in the last 10 s (how long an event may wait)",
                          value=facts["loop_lag"]),
        GaugeMetricFamily("sticky_cluster_master_uptime_seconds",
                          "Seconds since the master started", value=facts["uptime"]),
    ]


def _hosts_families(hosts: dict | None) -> list[Metric]:
    """Several hosts: this host's id, the hosts it knows, its forwarder and what was
    forwarded to each peer (nothing with one host)."""
    if hosts is None:
        return []
    peer = ["host"]
    requests = CounterMetricFamily("sticky_cluster_forwarded_requests", "Requests forwarded "
                                   "to another host, by host id", labels=peer)
    upgrades = CounterMetricFamily("sticky_cluster_forwarded_upgrades", "Websocket upgrades "
                                   "forwarded to another host (then relayed both ways)",
                                   labels=peer)
    sent = CounterMetricFamily("sticky_cluster_forwarded_bytes", "Bytes relayed to (out) and "
                               "from (in) another host", labels=["host", "direction"])
    errors = CounterMetricFamily("sticky_cluster_forward_errors", "Forwards that failed "
                                 "(the host refused, reset or did not answer)", labels=peer)
    seconds = CounterMetricFamily("sticky_cluster_forward_seconds", "Seconds forwards took "
                                  "from the request's head to the response's, summed "
                                  "(divide by sticky_cluster_forwards: the time a forward adds)",
                                  labels=peer)
    forwards = CounterMetricFamily("sticky_cluster_forwards", "Forwards timed in "
                                   "sticky_cluster_forward_seconds", labels=peer)
    for host, counts in sorted(hosts["peers"].items()):
        requests.add_metric([host], counts["requests"])
        upgrades.add_metric([host], counts["upgrades"])
        sent.add_metric([host, "out"], counts["bytes_out"])
        sent.add_metric([host, "in"], counts["bytes_in"])
        errors.add_metric([host], counts["errors"])
        seconds.add_metric([host], counts["forward_seconds"])
        forwards.add_metric([host], counts["forwards"])
    forwarder = hosts["forwarder"]
    return [
        GaugeMetricFamily("sticky_cluster_host_id", "This host's id among the hosts that "
                          "share sessions", value=hosts["host_id"]),
        GaugeMetricFamily("sticky_cluster_hosts_known", "Hosts in the directory of hosts, as "
                          "the forwarder read it last (this one included)",
                          value=len(hosts["known"])),
        GaugeMetricFamily("sticky_cluster_forwarder_up", "1 while the forwarder serves",
                          value=int(forwarder["up"])),
        CounterMetricFamily("sticky_cluster_forwarder_restarts", "Forwarders started again "
                            "after one died", value=forwarder["respawns"]),
        _counter("sticky_cluster_forwarder_connections", "Connections the master handed to "
                 "the forwarder (sent), held while it was down (held), and the forwarder "
                 "handed back, being for this host (handed_back)", "outcome",
                 {"sent": hosts["forwarded"], "held": hosts["held"],
                  "handed_back": hosts["handed_back"]}),
        CounterMetricFamily("sticky_cluster_forwarder_relayed_own", "Requests of this "
                            "host's sessions the forwarder relayed to this host's workers "
                            "(on a client connection that carries other hosts' sessions too)",
                            value=hosts["relayed_own"]),
        _counter("sticky_cluster_forwards_refused", "Requests the forwarder answered itself: "
                 "a host not in the directory (400), a loop (502), a host that did not answer "
                 "(502)", "reason", hosts["refused"]),
        requests, upgrades, sent, errors, seconds, forwards,
    ]


def _counter(name: str, documentation: str, label: str, values: dict[str, int]) -> Metric:
    family = CounterMetricFamily(name, documentation, labels=[label])
    for key, value in values.items():
        family.add_metric([key], value)
    return family
