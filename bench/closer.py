"""The master alone: ``python -m bench.closer run …`` is ``sticky-cluster run …`` whose
eventlet workers close every connection they are handed, unread.

The master's cost per hand-off (accept, peek, decide, place, ``sendmsg``) is then measured
without the workers' work competing for the cores (:mod:`bench.ceiling`). The master, its
options and its code path are the real ones; only what the forked workers run differs:
this module points the ``eventlet`` runtime of :data:`cluster.protocol.spec.RUNTIMES` at
:class:`bench.closer_runtime.CloserRuntime` before the master forks (the start-up check, a
subprocess of its own, still loads the app as a real eventlet worker). Production code is
untouched.
"""
from __future__ import annotations

import sys

from cluster.protocol import spec

RUNTIME = "bench.closer_runtime:CloserRuntime"


def main() -> None:
    """``sticky-cluster`` with the eventlet runtime replaced by the closer."""
    spec.RUNTIMES["eventlet"] = RUNTIME
    from cluster.cli.cli import main as cli

    sys.argv[0] = "sticky-cluster"
    cli()


if __name__ == "__main__":
    main()
