"""examples/kubernetes/chat.yaml, read as Kubernetes would: pods that are hosts of their own
behind a Service without session affinity. Each pod advertises its pod IP (the downward
API, ``status.podIP``) and port; the adapter is a Redis-family URL naming the Redis Service
of the same file. Started with ``--check``: tests/e2e/test_container.py."""
from __future__ import annotations

import re

import yaml

from cluster.hosts.addresses import parse_advertise
from cluster.protocol import adapters
from cluster.setup.options import env_name
from tests.support.paths import ROOT

EXAMPLE = ROOT / "examples" / "kubernetes" / "chat.yaml"


def documents() -> list[dict]:
    return list(yaml.safe_load_all(EXAMPLE.read_text()))


def named(kind: str, name: str) -> dict:
    (found,) = [doc for doc in documents()
                if doc["kind"] == kind and doc["metadata"]["name"] == name]
    return found


def chat_container() -> dict:
    (container,) = named("Deployment", "chat")["spec"]["template"]["spec"]["containers"]
    return container


def test_the_example_holds_the_app_its_service_and_a_redis():
    assert sorted((doc["kind"], doc["metadata"]["name"]) for doc in documents()) == [
        ("Deployment", "chat"), ("Deployment", "chat-redis"),
        ("Service", "chat"), ("Service", "chat-redis")]
    assert named("Deployment", "chat")["spec"]["replicas"] > 1


def test_the_service_has_no_session_affinity():
    service = named("Service", "chat")
    assert "sessionAffinity" not in service["spec"]
    assert service["spec"]["selector"] == \
        named("Deployment", "chat")["spec"]["template"]["metadata"]["labels"]


def test_each_pod_advertises_its_pod_ip_and_its_port():
    container = chat_container()
    env = container["env"]
    names = [item["name"] for item in env]
    by_name = {item["name"]: item for item in env}
    advertise = by_name[env_name("--advertise")]["value"]
    reference = re.fullmatch(r"\$\((\w+)\):(\d+)", advertise)
    assert reference, advertise
    pod_ip = by_name[reference[1]]
    assert pod_ip["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    # Kubernetes expands $(VAR) only from a variable defined before it
    assert names.index(reference[1]) < names.index(env_name("--advertise"))
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert int(reference[2]) == ports["http"] == int(by_name["PORT"]["value"])
    assert parse_advertise(advertise.replace(f"$({reference[1]})", "10.1.2.3")) == \
        ("10.1.2.3", ports["http"])


def test_the_adapter_is_the_redis_of_the_example():
    args = chat_container()["args"]
    assert args[:3] == ["sticky-cluster", "run", "examples.chat:app"]
    url = args[args.index("--adapter") + 1]
    scheme = adapters.scheme_of(url)  # a URL the master accepts
    assert scheme.family == "redis" and not scheme.sentinel
    host, _, port = url.split("//")[1].split("/")[0].partition(":")
    redis_service = named("Service", host)
    assert [p["port"] for p in redis_service["spec"]["ports"]] == [int(port)]
    assert redis_service["spec"]["selector"] == \
        named("Deployment", host)["spec"]["template"]["metadata"]["labels"]
    assert "--peers" not in args and "--host-id" not in args  # ids from the directory
