"""The workers' template (cluster/pool/template.py): every runtime's workers are forks of a
warm template and stay the master's children; a dead one's successor is forked from the
master (its clients reconnect to the others meanwhile); scaling up and a rolling restart
fork from the template; without one the master forks the workers itself.

Real masters and forked workers; the master's debug lines say where each worker was forked.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import psutil
import pytest

from tests.support.clients import ask, run
from tests.support.masters import RUNTIME_TARGETS, gone, is_template, worker_pids
from tests.support.paths import ROOT
from tests.support.ports import free_port
from tests.support.waiting import wait_for


def _new_worker(cluster, old: set[int]) -> int:
    """The worker that replaced one of ``old``, once the master says it is ready."""
    def logged_successor() -> int | None:  # forked before the master logs it
        return next((pid for pid in cluster.worker_pids() - old
                     if f"worker {pid} (slot" in cluster.log), None)

    pid = wait_for(logged_successor, 30, what="the successor")
    cluster.wait_log(f"worker {pid} (slot {cluster.slot_of(pid)}) ready", timeout=60)
    return pid


@pytest.mark.parametrize("runtime", ["eventlet", "asgi", "gevent", "threading"])
def test_workers_fork_from_the_warm_template_and_a_dead_ones_successor_from_the_master(
        start_cluster, runtime):
    cluster = start_cluster(RUNTIME_TARGETS[runtime], workers=2, args=("--log-level", "debug"))
    template = cluster.template_pid()
    assert template is not None, cluster.log
    assert f"worker template {template} ready" in cluster.log
    assert "could not warm up" not in cluster.log
    workers = cluster.worker_pids()
    assert len(workers) == 2
    for pid in workers:
        assert psutil.Process(pid).ppid() == cluster.pid  # the master's child, not the template's
        assert f"worker {pid} (slot {cluster.slot_of(pid)}) forked from the template {template}" \
            in cluster.log

    victim = min(workers)
    os.kill(victim, signal.SIGKILL)
    successor = _new_worker(cluster, workers)
    assert f"worker {successor} (slot {cluster.slot_of(successor)}) forked from the master" \
        in cluster.log
    assert psutil.Process(successor).ppid() == cluster.pid
    assert run(ask(cluster.url, 1))["pid"] in cluster.worker_pids()
    assert cluster.template_pid() == template  # still there for the next roll


def test_scaling_up_forks_from_the_template_or_without_one_from_the_master_and_a_roll_renews_it(
        start_cluster):
    cluster = start_cluster(workers=1, args=("--log-level", "debug"))
    template = cluster.template_pid()
    assert template is not None

    workers = cluster.worker_pids()
    cluster.signal(signal.SIGTTIN)
    added = _new_worker(cluster, workers)
    assert f"worker {added} (slot 1) forked from the template {template}" in cluster.log

    os.kill(template, signal.SIGKILL)
    cluster.wait_log(f"worker template {template} exited (signal SIGKILL)")
    workers = cluster.worker_pids()
    cluster.signal(signal.SIGTTIN)
    added = _new_worker(cluster, workers)
    assert f"worker {added} (slot 2) forked from the master" in cluster.log
    assert run(ask(cluster.url, 2))["pid"] in cluster.worker_pids()

    workers = cluster.worker_pids()
    cluster.signal(signal.SIGHUP)
    cluster.wait_log("rolling restart done")
    renewed = wait_for(cluster.template_pid, 30, what="a new template")
    assert renewed != template
    rolled = wait_for(lambda: len(cluster.worker_pids() - workers) == 3 and cluster.worker_pids() - workers,
                      30, what="three new workers")
    for pid in rolled:
        assert f"worker {pid} (slot {cluster.slot_of(pid)}) forked from the template {renewed}" \
            in cluster.log
    cluster.stop()
    wait_for(lambda: gone(renewed), 10, what="the template to exit with the master")


def test_a_roll_whose_new_template_is_not_warm_within_the_boot_timeout_forks_from_the_master(
        start_cluster):
    """A renewed template that cannot warm up (stopped here with SIGSTOP, as a template
    stuck on a slow disk would be) does not hold the roll back longer than --boot-timeout:
    the master gives it up and forks the roll's workers itself."""
    cluster = start_cluster(workers=2, args=("--log-level", "debug", "--boot-timeout", "5"))
    for attempt in range(1, 6):
        old, workers = cluster.template_pid(), cluster.worker_pids()
        cluster.signal(signal.SIGHUP)
        renewed = wait_for(lambda: (pid := cluster.template_pid()) != old and pid, 30,
                           interval=0.002, what="the renewed template")
        os.kill(renewed, signal.SIGSTOP)
        wait_for(lambda: f"worker template {renewed} ready" in cluster.log
                 or f"worker template {renewed} not warm within 5 s" in cluster.log, 30,
                 what="the renewed template warm or given up")
        if f"worker template {renewed} ready" not in cluster.log:
            break
        os.kill(renewed, signal.SIGCONT)  # warm before it was stopped: let this roll end, again
        cluster.wait_log("rolling restart done", count=attempt)
    else:
        pytest.fail("the renewed template was warm before the test could stop it, 5 times")

    cluster.wait_log("rolling restart done", count=attempt)
    wait_for(lambda: gone(renewed), 10, what="the master to kill the template it gave up")
    rolled = wait_for(lambda: len(cluster.worker_pids() - workers) == 2
                      and cluster.worker_pids() - workers, 30, what="two new workers")
    for pid in rolled:
        assert f"worker {pid} (slot {cluster.slot_of(pid)}) forked from the master" in cluster.log
    assert run(ask(cluster.url, 1))["pid"] in rolled


def test_an_app_object_has_no_template_and_its_roll_forks_from_the_master(tmp_path):
    port = free_port()
    log = tmp_path / "embedded.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "tests.apps.embedded", str(port), "--object"],
                                cwd=ROOT, stdin=subprocess.PIPE, stdout=out,
                                stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: "cluster ready" in log.read_text(), 30, what="the embedded master")
        first = worker_pids(proc.pid)
        assert len(first) == 2
        assert not any(is_template(child) for child in psutil.Process(proc.pid).children())
        proc.stdin.write("reload\n")
        proc.stdin.flush()
        wait_for(lambda: "rolling restart done" in log.read_text(), 30, what="the roll")
        assert "worker template" not in log.read_text()
        assert not any(is_template(child) for child in psutil.Process(proc.pid).children())
        assert run(ask(f"http://127.0.0.1:{port}", 3))["pid"] not in first
        proc.stdin.write("stop\n")
        proc.stdin.flush()
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
