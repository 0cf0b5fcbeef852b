"""sticky-cluster config file: prometheus_client's multiprocess mode for the app's metrics.

    sticky-cluster run examples.prometheus_app:app -c examples/prometheus_config.py

prometheus_client chooses its multiprocess mode when it is first imported, from
PROMETHEUS_MULTIPROC_DIR: so the variable is set in ``on_starting``, before any worker is
forked (the workers inherit it and import the app after that), and this file imports
prometheus_client only inside its hooks, never at the top.
"""
import glob
import os
import tempfile

workers = 2
bind = "127.0.0.1:5000"


def on_starting(master):
    """A directory for the workers' metric files, emptied of an earlier run's."""
    path = os.environ.setdefault(
        "PROMETHEUS_MULTIPROC_DIR",
        os.path.join(tempfile.gettempdir(), f"sticky-cluster-metrics-{os.getpid()}"))
    os.makedirs(path, exist_ok=True)
    for stale in glob.glob(os.path.join(path, "*.db")):
        os.remove(stale)


def worker_exit(master, worker):
    """A worker has exited: drop its live gauges (its counters stay in the totals)."""
    from prometheus_client import multiprocess
    multiprocess.mark_process_dead(worker.pid)
