"""Containers: the CPUs a process may use (affinity, cgroup v2 and v1 quotas), ``PORT`` and
``WEB_CONCURRENCY`` as gunicorn reads them. The examples in examples/deploy/, checked by the
command line: tests/e2e/test_container.py."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from cluster.setup.config import Bind, ConfigError, make_settings
from cluster.setup.container import default_bind, default_workers, usable_cpus


def fake_root(tmp_path: Path, cgroup: str, files: dict[str, str]) -> Path:
    """A file system root holding ``proc/self/cgroup`` and the cgroup ``files`` given."""
    (tmp_path / "proc/self").mkdir(parents=True)
    (tmp_path / "proc/self/cgroup").write_text(cgroup)
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


# ---------------------------------------------------------------------- the CPUs


def test_a_cgroup_v2_quota_caps_the_affinity_rounded_up(tmp_path):
    root = fake_root(tmp_path, "0::/\n", {"sys/fs/cgroup/cpu.max": "150000 100000\n",
                                             "sys/fs/cgroup/cgroup.controllers": "cpu\n"})
    assert usable_cpus(root, affinity=8) == 2
    assert usable_cpus(root, affinity=1) == 1


def test_no_quota_leaves_the_affinity(tmp_path):
    root = fake_root(tmp_path, "0::/\n", {"sys/fs/cgroup/cpu.max": "max 100000\n",
                                             "sys/fs/cgroup/cgroup.controllers": "cpu\n"})
    assert usable_cpus(root, affinity=6) == 6
    assert usable_cpus(tmp_path / "nowhere", affinity=3) == 3  # nothing to read


def test_a_parent_cgroups_quota_counts_too(tmp_path):
    root = fake_root(tmp_path, "0::/system.slice/chat.service\n", {
        "sys/fs/cgroup/system.slice/chat.service/cpu.max": "max 100000\n",
        "sys/fs/cgroup/system.slice/cpu.max": "300000 100000\n",
        "sys/fs/cgroup/cgroup.controllers": "cpu\n",
    })
    assert usable_cpus(root, affinity=16) == 3


def test_a_hybrid_host_reads_the_unified_mount(tmp_path):
    root = fake_root(tmp_path, "4:memory:/x\n0::/\n", {
        "sys/fs/cgroup/unified/cpu.max": "50000 100000\n",
        "sys/fs/cgroup/unified/cgroup.controllers": "\n",
        "sys/fs/cgroup/memory/memory.limit_in_bytes": "9223372036854771712\n"})
    assert usable_cpus(root, affinity=4) == 1


def test_a_cgroup_v1_cfs_quota(tmp_path):
    root = fake_root(tmp_path, "9:cpu,cpuacct:/docker/abc\n", {
        "sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "250000\n",
        "sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n",
        "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us": "-1\n",
        "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us": "100000\n",
    })
    assert usable_cpus(root, affinity=8) == 3


def test_this_machine_has_at_least_one_usable_cpu_and_no_more_than_its_affinity():
    import os
    assert 1 <= usable_cpus() <= len(os.sched_getaffinity(0))


# -------------------------------------------------------- PORT and WEB_CONCURRENCY


def test_port_and_web_concurrency_are_the_defaults_and_options_win(monkeypatch):
    monkeypatch.setenv("PORT", "8080")
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    settings = make_settings("app:sio")
    assert settings.binds == (Bind(2, ("0.0.0.0", 8080)),) and settings.workers == 3
    given = make_settings("app:sio", bind="127.0.0.1:9000", workers=5)
    assert str(given.binds[0]) == "127.0.0.1:9000" and given.workers == 5


def test_without_them_the_defaults_are_loopback_and_the_usable_cpus(monkeypatch):
    monkeypatch.delenv("PORT", raising=False)
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
    settings = make_settings("app:sio")
    assert str(settings.binds[0]) == "127.0.0.1:5000" and settings.workers == usable_cpus()


@pytest.mark.parametrize(("name", "value", "message"), [
    ("PORT", "http", "bad PORT 'http': expected a TCP port number, 1 to 65535"),
    ("PORT", "70000", "bad PORT '70000'"),
    ("WEB_CONCURRENCY", "0", "bad WEB_CONCURRENCY '0': expected a number of workers, 1 or more"),
    ("WEB_CONCURRENCY", "two", "bad WEB_CONCURRENCY 'two'"),
])
def test_a_bad_platform_variable_is_one_line(monkeypatch, name, value, message):
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=re.escape(message)):
        make_settings("app:sio")
    assert default_bind({}) is None and default_workers({"WEB_CONCURRENCY": "4"}) == 4
