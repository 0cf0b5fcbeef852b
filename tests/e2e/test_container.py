"""Containers, run: the command line on a bad ``PORT``, and the examples in examples/deploy/
and examples/kubernetes/ (the Dockerfile's command, the Kubernetes Deployment's) checked with
``--check``. The CPUs, ``PORT`` and ``WEB_CONCURRENCY`` as values:
tests/unit/cluster/test_container.py; the Kubernetes example's several hosts:
tests/unit/hosts/test_kubernetes_example.py."""
from __future__ import annotations

import json
import shlex

import yaml

from cluster.setup import options
from tests.support.masters import cli
from tests.support.paths import ROOT

DEPLOY = ROOT / "examples" / "deploy"
KUBERNETES = ROOT / "examples" / "kubernetes" / "chat.yaml"


def test_the_command_line_says_a_bad_port_in_one_line_and_a_flag_wins_over_it():
    result = cli("run", "tests.apps.chat:sio", "--check", env={"PORT": "http"})
    assert result.returncode != 0
    assert result.stderr.strip() == "Error: bad PORT 'http': expected a TCP port number, 1 to 65535"
    result = cli("run", "tests.apps.chat:sio", "--check",
                 env={"PORT": "http", "STICKY_CLUSTER_BIND": "127.0.0.1:5999"})
    assert result.returncode == 0, result.stderr


# ------------------------------------------------------------------- the examples


def dockerfile() -> tuple[list[str], dict[str, str]]:
    """The example Dockerfile's CMD (exec form) and its ENV variables."""
    command, env = None, {}
    for line in (DEPLOY / "Dockerfile").read_text().splitlines():
        instruction, _, rest = line.partition(" ")
        if instruction == "CMD":
            command = json.loads(rest)
        elif instruction == "ENV":
            for pair in shlex.split(rest):
                key, _, value = pair.partition("=")
                env[key] = value
    assert command is not None, "the Dockerfile has no CMD"
    return command, env


def deployment() -> dict:
    documents = list(yaml.safe_load_all(KUBERNETES.read_text()))
    (found,) = [doc for doc in documents
                if doc["kind"] == "Deployment" and doc["metadata"]["name"] == "chat"]
    return found


def seconds_of(args: list[str], flag: str) -> float:
    """The value ``args`` give ``flag``, else the option's default."""
    if flag in args:
        return float(args[args.index(flag) + 1])
    return float(next(o.default for o in options.OPTIONS if o.long_flag == flag))


def test_the_dockerfiles_command_is_a_valid_sticky_cluster_command_line():
    command, env = dockerfile()
    assert command[:2] == ["sticky-cluster", "run"] and env["PORT"].isdigit()
    assert "--bind" not in command  # PORT decides, as the platform says
    result = cli(*command[1:], "--check", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok: examples.chat:app loads")


def test_the_kubernetes_deployment_probes_healthz_and_outlives_the_drain(redis_server):
    pod = deployment()["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    args = container["args"]
    env = {item["name"]: item["value"] for item in container["env"] if "value" in item}
    status_port = int(args[args.index("--status-bind") + 1].rpartition(":")[2])
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    probe = container["readinessProbe"]["httpGet"]
    assert probe["path"] == "/healthz" and ports[probe["port"]] == status_port
    assert ports["http"] == int(env["PORT"])
    drain = seconds_of(args, "--graceful-timeout") + seconds_of(args, "--drain-spread")
    assert pod["terminationGracePeriodSeconds"] > drain
    assert "lifecycle" not in container  # no preStop: TERM drains
    image = dockerfile()[0]
    assert args[:len(image)] == image  # the image's command, spelt out, and the adapter
    assert args[len(image)] == "--adapter" and len(args) == len(image) + 2
    # the pod's IP and the Redis Service, here: a loopback address and the test's Redis
    env = {name: value.replace("$(POD_IP)", "127.0.0.1") for name, value in env.items()}
    result = cli(*args[1:-1], redis_server.url, "--check", env=env)
    assert result.returncode == 0, result.stderr
