"""A worker cannot take the master down: garbage on a real channel from a real worker.

Each misbehaviour is sent by the test app (:mod:`tests.apps.garbage`) from inside a
worker that serves a real client; the master must kill that worker, replace it in its
slot, log why, and keep serving the clients of the other workers.
"""
from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from clients import connected, source_address
from conftest import wait_for
from test_cluster import run
from test_supervision import gone, slot_of, wait_log

MODES = ("heartbeat", "mixed", "unknown", "huge", "master-kind", "short")
REASONS = {
    "heartbeat": "heartbeat field",
    "mixed": "HEARTBEAT fragment inside an unfinished PUBLISH",
    "unknown": "unknown message kind 200",
    "huge": "PUBLISH message over",
    "master-kind": "HANDOFF is not a message a worker sends",
    "short": "short channel packet",
}


def test_a_worker_sending_garbage_is_killed_and_replaced_and_the_master_serves_on(start_cluster):
    cluster = start_cluster("tests.apps.garbage:sio", workers=2)

    async def main():
        async with connected(cluster.url, source_address(700)) as bystander:
            bystander_pid = (await bystander.call("whoami", timeout=10))["pid"]
            index = 701
            for mode in MODES:
                # a client on the other worker than the bystander's: it will misbehave
                while True:
                    async with connected(cluster.url, source_address(index)) as client:
                        index += 1
                        victim = (await client.call("whoami", timeout=10))["pid"]
                        if victim == bystander_pid:
                            continue
                        slot = slot_of(cluster, victim)
                        await client.emit("misbehave", mode)
                        await wait_log(cluster, f"worker {victim} (slot {slot}) killed with "
                                                f"SIGKILL: protocol violation: ", timeout=30)
                        break
                assert REASONS[mode] in cluster.log, (mode, cluster.log)
                await wait_log(cluster, f"(slot {slot}) ready after", count=MODES.index(mode) + 2)
                # the bystander's worker never noticed; the master still answers everyone
                assert (await bystander.call("whoami", timeout=10))["pid"] == bystander_pid
                assert gone(victim)
            answers = [await _ask(cluster.url, 800 + i) for i in range(6)]
            return bystander_pid, answers

    bystander_pid, answers = run(main())
    assert cluster.proc.poll() is None, cluster.log
    assert len(cluster.worker_pids()) == 2
    assert all(answer in cluster.worker_pids() for answer in answers)
    assert "\x1b" not in cluster.log and "\nFORGED" not in cluster.log
    assert "Traceback" not in cluster.log


async def _ask(url: str, index: int) -> int:
    async with connected(url, source_address(index)) as client:
        return (await client.call("whoami", timeout=10))["pid"]


def test_a_sid_with_control_characters_is_logged_escaped(start_cluster, tmp_path):
    log_file = tmp_path / "cluster.log"
    cluster = start_cluster(workers=2, args=("--log-file", str(log_file)), wait=False)
    wait_for(lambda: log_file.exists() and "cluster ready" in log_file.read_text(), 30,
             what="the cluster to be ready")
    sid = "%1b[31mX%0d%0aFORGED:%20evil%00%7f"
    url = f"{cluster.url}/socket.io/?EIO=4&transport=polling&sid={sid}"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url, timeout=10)
    assert refused.value.code == 400
    assert b"Traceback" not in refused.value.read()
    wait_for(lambda: "Invalid session" in log_file.read_text(), 20, what="the bad sid logged")
    for text in (log_file.read_text(), cluster.log):  # the log file, and stderr
        assert "\x1b" not in text and "\r" not in text and "\x00" not in text
        assert not any(line.startswith("FORGED") for line in text.splitlines())
    assert "Invalid session \\x1b[31mX\\r\\nFORGED: evil\\x00\\x7f" in log_file.read_text()
