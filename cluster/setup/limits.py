"""The master's process limits, raised before it forks: every worker inherits them."""
from __future__ import annotations

import resource


def raise_open_files_limit() -> int:
    """Raise the soft limit on open files to the hard limit; return the new soft limit.

    Every client connection is a file descriptor, in the master for a moment and in a
    worker for the connection's life.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return hard
    return soft
