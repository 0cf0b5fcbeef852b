"""Redis Sentinel: the primary is killed under a stream of broadcasts, the cluster rides it out."""
from __future__ import annotations

from brokers import SentinelSet, broadcast_stream
from test_cluster import run


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
        assert cluster.worker_pids() == pids_before, "workers crashed or were restarted"
        assert cluster.proc.poll() is None
    finally:
        sentinels.stop()
