"""Redis Sentinel: the primary is killed under a stream of broadcasts, the cluster rides it out."""
from __future__ import annotations

import pytest

from tests.support.brokers import SentinelSet, broadcast_stream
from tests.support.clients import room_broadcast_reaches_every_worker, run
from tests.support.masters import cli
from tests.support.ports import free_port


@pytest.mark.long
def test_primary_killed_broadcasts_resume_no_crash_no_disconnect(start_cluster, tmp_path):
    sentinels = SentinelSet(tmp_path / "sentinel")
    try:
        sentinels.start()
        cluster = start_cluster(workers=2, args=("--adapter", sentinels.url))
        pids_before = cluster.worker_pids()
        old_primary = sentinels.primary.port
        figures = run(broadcast_stream(cluster.url, sentinels.primary.kill, first_source=700))
        print(f"\nSentinel failover: {figures}")
        assert sentinels.primary_port() == sentinels.replica.port != old_primary
        assert figures.resumed, f"broadcasts did not flow again after the failover: {figures}"
        assert figures.disconnects == 0, figures
        assert figures.gap < 30, figures  # the listener backs off 1, 2, 4 … s
        assert figures.slowest_emit < 5, figures
        assert cluster.worker_pids() == pids_before, "workers crashed or were restarted"
        assert cluster.proc.poll() is None
    finally:
        sentinels.stop()


def test_valkey_sentinel_url_finds_the_primary(start_cluster, tmp_path):
    sentinels = SentinelSet(tmp_path / "sentinel")
    try:
        sentinels.start()
        url = sentinels.url.replace("redis+sentinel://", "valkey+sentinel://")
        cluster = start_cluster(workers=3, args=("--adapter", url))
        listeners, senders, shouter = run(room_broadcast_reaches_every_worker([cluster.url], 9))
        assert len(listeners) >= 2
        assert senders == {shouter}
    finally:
        sentinels.stop()


@pytest.mark.long
def test_no_sentinel_answers_is_one_line(tmp_path):
    url = f"redis+sentinel://:s3cret@127.0.0.1:{free_port()},127.0.0.1:{free_port()}/0/sticky"
    result = cli("run", "tests.apps.chat:sio", "--bind", f"127.0.0.1:{free_port()}", "--adapter", url)
    assert result.returncode != 0
    assert "cannot reach the broker at redis+sentinel://:***@127.0.0.1:" in result.stderr
    assert "s3cret" not in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
