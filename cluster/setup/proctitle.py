"""Process titles (``sticky-cluster master app:sio``, ``sticky-cluster worker 2 app:sio``).

Shown by ``ps`` and ``top`` when the optional ``setproctitle`` package is installed
(the ``titles`` extra: ``pip install setproctitle``); without it, titles are left as they are.
"""
from __future__ import annotations

PREFIX = "sticky-cluster "
"""What every title of ours starts with."""


def set_title(title: str) -> None:
    """Make ``sticky-cluster TITLE`` this process's title, if ``setproctitle`` is installed."""
    try:
        from setproctitle import setproctitle
    except ImportError:
        return
    setproctitle(PREFIX + title)


def has_title(cmdline: list[str], title: str) -> bool:
    """Whether a process whose command line ``ps`` shows as ``cmdline`` has our ``title``
    (``title`` may be the start of it)."""
    return " ".join(cmdline).startswith(PREFIX + title)
