"""Supervision: rolling restarts, scaling, failures and stops, driven by signals.

Real masters, forked workers and Socket.IO clients from distinct loopback addresses.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.support.clients import Stream, ask, connected, run, source_address, wait_upgraded
from cluster.pool.pool import boot_concurrency, oversubscribed
from tests.support.masters import RUNTIME_TARGETS, cli, gone, worker_pids
from tests.support.paths import ROOT
from tests.support.ports import free_port
from tests.support.waiting import wait_for


# ----------------------------------------------------------------- helpers

async def map_addresses(url: str, indexes: range) -> dict[int, int]:
    """Which worker pid each source address lands on now (new connections)."""
    answers = await asyncio.gather(*(ask(url, i) for i in indexes))
    return {i: answer["pid"] for i, answer in zip(indexes, answers)}


# ----------------------------------------------------------- rolling restart

@pytest.mark.long
@pytest.mark.xdist_group("hup-under-load")  # one at a time: each stream takes a core
def test_hup_replaces_every_worker_without_a_failed_connection(start_cluster, app_target):
    # --balance ip: the resident's slot is the one its address hashes to, as the timing assumes
    cluster = start_cluster(app_target, workers=3, args=("--graceful-timeout", "3",
                                                         "--drain-spread", "1", "--balance", "ip"))
    before = cluster.worker_pids()

    async def main():
        stream = Stream(cluster.url, first_index=1000)
        stream.start()
        async with connected(cluster.url, source_address(999)) as resident:
            await wait_upgraded(resident)
            old = await resident.call("whoami", timeout=10)
            await asyncio.sleep(1)
            hup_at = time.monotonic()
            cluster.signal(signal.SIGHUP)
            await cluster.until_log("rolling restart done", timeout=60)
            done_at = time.monotonic()
            # its old worker drains: the session goes on, until the graceful timeout ends it
            assert await resident.call("whoami", timeout=10) == old
            await asyncio.sleep(0.5)
            attempts = await stream.stop()
            deadline = time.monotonic() + 30
            while resident.connected and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            assert not resident.connected, "the draining worker kept its session past 3 s"
        return attempts, stream.between(hup_at, done_at)

    attempts, during = run(main())
    failed = [a for a in attempts if a.error]
    print(f"\nHUP under load: {len(during)} connection attempts during the rolling restart, "
          f"{sum(1 for a in during if a.error)} failed ({len(attempts)} in all, "
          f"{len(failed)} failed)")
    assert len(during) >= 20, "too few attempts during the restart to prove anything"
    assert not failed, failed[:5]
    after = wait_for(lambda: len(pids := cluster.worker_pids()) == 3 and pids.isdisjoint(before)
                     and pids, 20, what="the old workers to drain and exit")
    assert {a.pid for a in during} & after, "no new worker served during the restart"

    async def sticky(index):
        async with connected(cluster.url, source_address(index)) as client:
            first = await client.call("whoami", timeout=10)
            await wait_upgraded(client)
            later = {(await client.call("whoami", timeout=10))["pid"] for _ in range(3)}
            return first["pid"], later

    async def clients():
        return await asyncio.gather(*(sticky(1300 + i) for i in range(24)))

    results = run(clients())
    assert all(later == {first} for first, later in results)
    assert {first for first, _ in results} <= after
    assert len({first for first, _ in results}) >= 2


def test_hup_of_a_broken_deploy_is_aborted_and_the_old_workers_keep_serving(start_cluster,
                                                                            tmp_path):
    broken = tmp_path / "broken"
    cluster = start_cluster("tests.apps.flaky:app", workers=2,
                            env={"FLAKY_BROKEN": str(broken)})
    before = cluster.worker_pids()

    async def main():
        async with connected(cluster.url, source_address(1400)) as client:
            first = await client.call("whoami", timeout=10)
            broken.write_text("bad deploy")
            cluster.signal(signal.SIGHUP)
            await cluster.until_log("rolling restart aborted")
            assert await client.call("whoami", timeout=10) == first
        return await map_addresses(cluster.url, range(1410, 1420))

    served = run(main())
    assert "the app is broken: bad deploy" in cluster.log
    assert set(served.values()) <= before
    assert cluster.worker_pids() == before
    assert cluster.proc.poll() is None

    broken.unlink()
    cluster.signal(signal.SIGHUP)
    cluster.wait_log("rolling restart done")
    wait_for(lambda: len(pids := cluster.worker_pids()) == 2 and pids.isdisjoint(before), 60,
             what="the fixed deploy to replace every worker")


def test_hup_while_booting_and_again_during_the_roll(start_cluster):
    cluster = start_cluster(workers=2, wait=False)
    cluster.wait_log("booting (start)", count=2)
    cluster.signal(signal.SIGHUP)
    cluster.wait_log("booting (rolling restart)")
    cluster.signal(signal.SIGHUP)  # a roll starts over, or starts again once the first is done
    cluster.wait_log("rolling restart of 2 workers", count=2)
    second = cluster.log.rindex("rolling restart of 2 workers")
    wait_for(lambda: "rolling restart done" in cluster.log[second:], 40,
             what="the second roll to end")
    log = cluster.log
    rolled_after_second_hup = {int(pid) for pid in re.findall(
        r"worker (\d+) \(slot \d\) booting \(rolling restart\)", log[second:])}
    wait_for(lambda: cluster.worker_pids() == rolled_after_second_hup, 60,
             what="only workers forked after the second HUP")
    assert "cluster ready" in cluster.log
    assert run(ask(cluster.url, 1450))["pid"] in rolled_after_second_hup


def test_embedding_api_reloads_scales_and_stops(tmp_path):
    port = free_port()
    log = tmp_path / "embedded.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "tests.apps.embedded", str(port)],
                                cwd=ROOT, stdin=subprocess.PIPE, stdout=out,
                                stderr=subprocess.STDOUT, text=True)

    def command(line: str, then: str, timeout: float = 30) -> None:
        proc.stdin.write(line + "\n")
        proc.stdin.flush()
        wait_for(lambda: then in log.read_text(), timeout, what=f"{then!r} after {line!r}")

    try:
        wait_for(lambda: "cluster ready" in log.read_text(), 30, what="the embedded master")
        first = worker_pids(proc.pid)
        command("scale 3", "(slot 2) ready")
        command("reload", "rolling restart done")
        wait_for(lambda: len(pids := worker_pids(proc.pid)) == 3
                 and pids.isdisjoint(first), 20, what="3 new workers")
        assert run(ask(f"http://127.0.0.1:{port}", 1460))["pid"] not in first
        command("stop graceful", "graceful stop")
        assert proc.wait(20) == 0
        assert "embedded master returned" in log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# ------------------------------------------------------------ dying workers

KILLED_WORKER_RUNTIMES = ["eventlet", "asgi", "threading"]

@pytest.mark.parametrize("app_target", [RUNTIME_TARGETS[name] for name in KILLED_WORKER_RUNTIMES],
                         ids=KILLED_WORKER_RUNTIMES)
def test_a_killed_worker_is_replaced_in_its_slot_and_others_keep_their_sessions(start_cluster,
                                                                                 app_target):
    """The slot's respawn is the master's; a survivor's sessions live in its own process.
    One runtime of each link to the master's relay (green, asyncio, threads)."""
    cluster = start_cluster(app_target, workers=2)  # the victim's, and the others' worker

    async def main():
        async with contextlib.AsyncExitStack() as stack:
            clients = []
            for index in range(1500, 1512):
                client = await stack.enter_async_context(connected(cluster.url,
                                                                   source_address(index)))
                await wait_upgraded(client)
                clients.append((index, client, await client.call("whoami", timeout=10)))
            victim = clients[0][2]["pid"]
            slot = cluster.slot_of(victim)
            os.kill(victim, signal.SIGKILL)
            await cluster.until_log(f"worker {victim} (slot {slot}) died (signal SIGKILL)")
            await cluster.until_log(f"(slot {slot}) ready", count=2)
            survivors = [(client, answer) for _i, client, answer in clients
                         if answer["pid"] != victim]
            assert survivors
            for client, answer in survivors:
                assert client.connected
                assert await client.call("whoami", timeout=10) == answer
            replacement = (await ask(cluster.url, clients[0][0]))["pid"]
            return victim, slot, replacement, {answer["pid"] for _c, answer in survivors}

    victim, slot, replacement, survivors = run(main())
    assert replacement not in survivors | {victim}
    assert cluster.slot_of(replacement) == slot
    assert victim not in cluster.worker_pids()


def test_a_worker_that_blocks_its_loop_is_killed_after_the_timeout(start_cluster, app_target):
    cluster = start_cluster(app_target, workers=2, args=("--timeout", "2", "--balance", "ip"))  # same slot again

    async def main():
        async with connected(cluster.url, source_address(1600)) as client:
            victim = (await client.call("whoami", timeout=10))["pid"]
            blocked_at = time.monotonic()
            await client.emit("block", 60)
            await cluster.until_log(f"worker {victim} (slot {cluster.slot_of(victim)}) killed "
                                    "with SIGKILL: no heartbeat", timeout=40)  # blocked for 60 s
            killed_after = time.monotonic() - blocked_at
        slot = cluster.slot_of(victim)
        await cluster.until_log(f"(slot {slot}) ready", count=2)
        return victim, slot, killed_after, (await ask(cluster.url, 1600))["pid"]

    victim, slot, killed_after, replacement = run(main())
    assert killed_after >= 1.4  # 2 s after the last heartbeat (every 0.5 s), not before
    assert replacement != victim and cluster.slot_of(replacement) == slot
    assert gone(victim)


def test_workers_failing_to_boot_stop_the_master_with_the_error(start_cluster, tmp_path):
    cluster = start_cluster("tests.apps.flaky:app", workers=2, wait=False,
                            env={"FLAKY_BROKEN": str(tmp_path / "broken"),
                                 "FLAKY_BREAK_AFTER_CHECK": "1"})
    code = cluster.wait(60)  # exits by itself: with a restart loop it never would
    assert code != 0
    last = cluster.log.strip().splitlines()[-1]
    assert "workers fail to boot" in last and "the app is broken: broken after the check" in last
    assert len(re.findall(r"\(slot \d\) booting \(", cluster.log)) <= 5, "a restart loop"
    assert "cluster ready" not in cluster.log


def booting_pids(cluster, slot: int) -> list[int]:
    """The workers the master's log says it started for ``slot``, in order."""
    return [int(pid) for pid in re.findall(rf"worker (\d+) \(slot {slot}\) booting", cluster.log)]


def test_workers_killed_while_booting_are_respawned_and_the_others_serve_on(start_cluster,
                                                                            tmp_path):
    """SIGKILL (an operator, the OOM killer, any process of the workers' user) of booting
    workers, again and again: not the app's failure, so the master never gives up. Four
    kills in a row while booting: past the three after which an app's failures stop it
    (each waits out a doubled backoff: a fifth would add 6.4 s)."""
    gate = tmp_path / "stuck"
    cluster = start_cluster("tests.apps.stuck:sio", workers=2, env={"STUCK": str(gate)})
    victim, survivor = sorted(cluster.worker_pids())
    slot = cluster.slot_of(victim)
    gate.touch()  # the slot's next workers block at import: they stay booting
    os.kill(victim, signal.SIGKILL)
    for kills in range(1, 5):
        wait_for(lambda: (len(booting_pids(cluster, slot)) > kills
                          or cluster.proc.poll() is not None),
                 60, what=f"boot {kills} of slot {slot}'s replacement")
        assert cluster.proc.poll() is None, f"the master gave up after {kills - 1} kills"
        booting = booting_pids(cluster, slot)[-1]
        os.kill(booting, signal.SIGKILL)
        cluster.wait_log(f"worker {booting} (slot {slot}) died (signal SIGKILL) while booting")
        assert run(ask(cluster.url, 1900 + kills))["pid"] == survivor
    gate.unlink()
    cluster.wait_log(f"(slot {slot}) ready", count=2)
    assert cluster.proc.poll() is None
    assert "workers fail to boot" not in cluster.log
    assert {run(ask(cluster.url, 1910 + i))["pid"] for i in range(8)} == cluster.worker_pids()


def test_an_app_that_blocks_at_import_ends_start_up_after_the_boot_timeout(tmp_path):
    gate = tmp_path / "stuck"
    gate.touch()
    started = time.monotonic()
    result = cli("run", "tests.apps.stuck:sio", "--bind", f"127.0.0.1:{free_port()}",
                 "--boot-timeout", "2", timeout=40, env={"STUCK": str(gate)})
    assert (result.returncode, result.stderr.strip()) == (
        1, "Error: the app tests.apps.stuck:sio did not load within 2 s (--boot-timeout): "
           "does its import wait for something?")
    assert time.monotonic() - started < 30


def test_workers_that_block_at_import_are_killed_after_the_boot_timeout(start_cluster,
                                                                          tmp_path):
    # 10 s: the start-up check (which loads the app too) must pass on a busy machine
    # three slots boot side by side: the three failures in a row come in one boot timeout
    cluster = start_cluster("tests.apps.stuck:sio", workers=3, wait=False,
                            args=("--boot-timeout", "10"),
                            env={"STUCK": str(tmp_path / "stuck"), "STUCK_AFTER_CHECK": "1"})
    assert cluster.wait(120) != 0  # it gives up by itself
    killed = re.findall(r"worker \d+ \(slot \d\) killed with SIGKILL: not ready within 10 s "
                        r"\(--boot-timeout\)\n", cluster.log)
    assert 3 <= len(killed) <= 4, cluster.log
    last = cluster.log.strip().splitlines()[-1]
    assert last.endswith("workers fail to boot (3 in a row): not ready within 10 s "
                         "(--boot-timeout)"), last
    assert "cluster ready" not in cluster.log


def test_master_killed_with_sigkill_takes_every_worker_with_it(start_cluster, tmp_path):
    pid_file = tmp_path / "master.pid"
    cluster = start_cluster(workers=3, args=("--pid", str(pid_file)))
    workers = cluster.worker_pids()
    assert len(workers) == 3
    cluster.signal(signal.SIGKILL)
    # they exit by themselves (an orphan would live on; the no_orphans check kills it)
    wait_for(lambda: all(gone(pid) for pid in workers), 30, what="the workers to exit")
    assert cluster.wait(5) == -signal.SIGKILL
    result = cli("status", "--pid", str(pid_file))
    assert result.returncode != 0
    assert result.stderr.strip() == (f"Error: stale pid file {pid_file}: "
                                     f"no process {cluster.pid} is running")


# ------------------------------------------------------------------ scaling

@pytest.mark.long
def test_ttin_ttou_scale_and_only_the_clients_of_that_slot_move(start_cluster):
    cluster = start_cluster(workers=2, args=("--graceful-timeout", "2", "--balance", "ip"))
    addresses = range(1700, 1740)

    async def main():
        before = await map_addresses(cluster.url, addresses)
        async with contextlib.AsyncExitStack() as stack:
            kept = []
            for index in range(1750, 1758):
                client = await stack.enter_async_context(connected(cluster.url,
                                                                   source_address(index)))
                await wait_upgraded(client)
                kept.append((client, await client.call("whoami", timeout=10)))
            cluster.signal(signal.SIGTTIN)
            await cluster.until_log("(slot 2) ready")
            cluster.signal(signal.SIGTTIN)
            await cluster.until_log("(slot 3) ready")
            four = await map_addresses(cluster.url, addresses)
            cluster.signal(signal.SIGTTOU)
            await cluster.until_log("(slot 3) draining (scaling down")
            three = await map_addresses(cluster.url, addresses)
            for client, answer in kept:
                assert client.connected
                assert await client.call("whoami", timeout=10) == answer
        return before, four, three

    before, four, three = run(main())
    new = {pid for pid in four.values() if pid not in before.values()}
    assert len(set(four.values())) == 4 and len(new) == 2
    moved = [i for i in addresses if four[i] != before[i]]
    assert moved and all(four[i] in new for i in moved)
    slot_3 = next(pid for pid in new if cluster.slot_of(pid) == 3)
    assert len(set(three.values())) == 3 and slot_3 not in three.values()
    assert all(three[i] == four[i] for i in addresses if four[i] != slot_3)
    wait_for(lambda: len(cluster.worker_pids()) == 3, 30, what="slot 3's worker to drain")


# ------------------------------------------------------------------- stopping

@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGQUIT], ids=["INT", "QUIT"])
def test_int_and_quit_under_load_stop_at_once(start_cluster, signum):
    cluster = start_cluster(workers=2, args=("--graceful-timeout", "120"))
    workers = cluster.worker_pids()

    async def main():
        stream = Stream(cluster.url, first_index=1800, attempt_timeout=3)
        stream.start()
        await asyncio.sleep(0.5)
        cluster.signal(signum)
        stopped_at = time.monotonic()
        await asyncio.get_running_loop().run_in_executor(None, cluster.wait, 60)
        elapsed = time.monotonic() - stopped_at
        await stream.stop()
        return elapsed, stream.attempts

    elapsed, attempts = run(main())
    assert cluster.proc.returncode == 0, cluster.log
    assert elapsed < 60, "the master waited for the graceful timeout"
    assert sum(1 for a in attempts if a.pid) >= 5
    assert all(gone(pid) for pid in workers)
    assert "fast stop" in cluster.log


def most_booting_at_once(log: str) -> int:
    """The most workers booting at the same time, as the master's log tells it."""
    booting: set[str] = set()
    most = 0
    for pid, event in re.findall(r"worker (\d+) \(slot \d+\) (booting|ready|died|drained)", log):
        if event == "booting":
            booting.add(pid)
            most = max(most, len(booting))
        else:
            booting.discard(pid)
    return most


@pytest.mark.long
def test_many_workers_boot_a_few_at_a_time_and_int_is_acted_on_at_once(start_cluster):
    workers, cpus = 40, len(os.sched_getaffinity(0))
    bound = boot_concurrency(cpus)
    cluster = start_cluster(workers=workers, wait=False)
    cluster.wait_log("ready after", count=bound + 2, timeout=120)  # booting goes on
    cluster.signal(signal.SIGINT)  # the fast stop (TERM drains)
    termed = time.monotonic()
    cluster.wait_log("fast stop", timeout=60)
    acted_after = time.monotonic() - termed
    assert cluster.wait(60) == 0
    print(f"INT acted on after {acted_after:.2f} s, exited after "
          f"{time.monotonic() - termed:.2f} s")
    assert acted_after < 10, "INT waited for the pool"  # one select wake-up, on a busy machine
    assert most_booting_at_once(cluster.log) <= bound
    assert "cluster ready" not in cluster.log
    warning = oversubscribed(workers, cpus)
    assert warning is None or cluster.log.count(warning) == 1


def test_term_under_load_lets_a_request_in_flight_finish(start_cluster):
    cluster = start_cluster(workers=2, args=("--graceful-timeout", "120"))
    workers = cluster.worker_pids()

    async def main():
        stream = Stream(cluster.url, first_index=1900, attempt_timeout=3)
        stream.start()
        async with connected(cluster.url, source_address(2150)) as client:
            await wait_upgraded(client)
            pid = (await client.call("whoami", timeout=10))["pid"]
            in_flight = asyncio.ensure_future(client.call("slow", 5, timeout=30))
            await asyncio.sleep(0.3)
            assert not in_flight.done()
            cluster.signal(signal.SIGTERM)
            quit_at = time.monotonic()
            answer = await in_flight
        await stream.stop()
        code = await asyncio.get_running_loop().run_in_executor(None, cluster.wait, 60)
        return pid, answer, code, time.monotonic() - quit_at

    pid, answer, code, stopped_after = run(main())
    assert answer == {"pid": pid}
    assert code == 0, cluster.log
    assert stopped_after < 60, "the master waited for the graceful timeout"
    assert all(gone(pid) for pid in workers)
    assert "graceful stop" in cluster.log


# ----------------------------------------------------------- CLI and logs

@pytest.mark.long
def test_cli_helpers_act_on_a_running_master(start_cluster, tmp_path):
    pid_file = tmp_path / "master.pid"
    # The signal way: the control socket is elsewhere, so the commands find no PID_FILE.ctl
    # (tests/e2e/test_operations.py tests the control socket).
    cluster = start_cluster(workers=2, args=("--pid", str(pid_file), "--graceful-timeout", "2",
                                             "--control", str(tmp_path / "elsewhere.ctl")))
    assert pid_file.read_text().strip() == str(cluster.pid)
    status_file = Path(f"{pid_file}.json")

    def status() -> dict:
        return json.loads(status_file.read_text())

    def settled(size: int) -> bool:
        now = status()
        return (now["size"] == size and len(now["serving"]) == size and not now["booting"]
                and not now["draining"] and not now["rolling"])

    wait_for(lambda: settled(2), 30, what="the status file")
    shown = cli("status", "--pid", str(pid_file))
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith(f"master {cluster.pid}: 2 workers")
    assert f"slot 0: worker {status()['serving']['0']}" in shown.stdout

    result = cli("scale", "3", "--pid", str(pid_file))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"master {cluster.pid}: scaled from 2 to 3 workers"
    wait_for(lambda: settled(3), 60, what="3 workers")
    result = cli("scale", "1", "--pid", str(pid_file))
    assert result.stdout.strip() == f"master {cluster.pid}: scaled from 3 to 1 workers"
    wait_for(lambda: settled(1), 60, what="1 worker")

    old = status()["serving"]["0"]
    result = cli("reload", "--pid", str(pid_file))
    assert result.stdout.strip() == f"master {cluster.pid}: rolling restart started (sent SIGHUP)"
    wait_for(lambda: settled(1) and status()["serving"]["0"] != old, 60, what="the reload")

    result = cli("stop", "--graceful", "--pid", str(pid_file))
    assert result.stdout.strip() == f"master {cluster.pid}: graceful stop started (sent SIGTERM)"
    assert cluster.wait(20) == 0
    assert not pid_file.exists() and not status_file.exists()

    for content, error in [(None, f"no pid file at {pid_file}: is the master running?"),
                           ("12ab\n", f"pid file {pid_file} does not hold a pid: '12ab'"),
                           (f"{cluster.pid}\n", f"stale pid file {pid_file}: no process "
                                                f"{cluster.pid} is running")]:
        if content is not None:
            pid_file.write_text(content)
        for command in (["status"], ["reload"], ["stop"], ["scale", "3"]):
            result = cli(*command, "--pid", str(pid_file))
            assert result.returncode != 0
            assert result.stderr.strip() == f"Error: {error}", result.stderr
    result = cli("scale", "0", "--pid", str(pid_file))
    assert result.returncode != 0 and "Traceback" not in result.stderr


def test_usr1_reopens_the_log_file(start_cluster, tmp_path):
    log_file = tmp_path / "cluster.log"
    cluster = start_cluster(workers=2, wait=False, args=("--log-file", str(log_file)))
    wait_for(lambda: log_file.exists() and "cluster ready" in log_file.read_text(), 60,
             what="the log file")
    rotated = log_file.rename(tmp_path / "cluster.log.1")
    cluster.signal(signal.SIGUSR1)
    wait_for(lambda: log_file.exists() and "log files reopened" in log_file.read_text(), 30,
             what="a new log file")
    cluster.signal(signal.SIGTTOU)
    wait_for(lambda: "draining: 0 sessions" in log_file.read_text(), 30,
             what="a worker's line in the new file")
    assert "log files reopened" not in rotated.read_text()
    assert "draining" not in rotated.read_text()
    worker_line = next(line for line in log_file.read_text().splitlines()
                       if "draining: 0 sessions" in line)
    assert f"[{cluster.pid}]" not in worker_line
