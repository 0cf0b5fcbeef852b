"""How much memory a process holds: read by the master of its workers (``--max-memory``)
and by a worker of itself (:mod:`workers.collector`). Standard library only, like the rest
of :mod:`cluster.protocol`."""
from __future__ import annotations

import os

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def resident_bytes(pid: int | str = "self") -> int | None:
    """Bytes of resident memory of process ``pid`` (``/proc/PID/statm``; ``"self"``: this
    one); None when it is gone or cannot be read."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as statm:
            return int(statm.read().split()[1]) * PAGE_SIZE
    except (OSError, IndexError, ValueError):
        return None
