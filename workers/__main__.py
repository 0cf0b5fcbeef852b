"""``python -m workers RUNTIME TARGET``: load the app as a worker of RUNTIME would.

The master runs this in a subprocess before it forks anything, so that a wrong target
is one clear line and a non-zero exit, and the master itself never imports the app.
"""
from __future__ import annotations

import sys

from . import RUNTIMES, runtime


def main(argv: list[str]) -> int:
    """Entry point; returns the exit code (0: the target loads, 2: it does not)."""
    if len(argv) != 2 or argv[0] not in RUNTIMES:
        print(f"usage: python -m workers {{{','.join(RUNTIMES)}}} MODULE:ATTR", file=sys.stderr)
        return 2
    error = runtime(argv[0]).check(argv[1])
    if error:
        print(error, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
