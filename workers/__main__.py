"""``python -m workers RUNTIME TARGET``: load the app as a worker of RUNTIME would.

The master runs this in a subprocess before it forks anything, so that a wrong target
is one clear line and a non-zero exit, and the master itself never imports the app.
RUNTIME ``auto`` loads the target without any monkey-patching and prints the name of
the runtime it needs on standard output; a named RUNTIME loads it the way that
runtime's workers do and fails when the target needs another one.
"""
from __future__ import annotations

import importlib
import sys

from cluster.protocol.spec import AUTO, RUNTIMES


def main(argv: list[str]) -> int:
    """Entry point; returns the exit code (0: the target loads, 2: it does not)."""
    if len(argv) != 2 or argv[0] not in (AUTO, *RUNTIMES):
        print(f"usage: python -m workers {{{AUTO},{','.join(RUNTIMES)}}} MODULE:ATTR", file=sys.stderr)
        return 2
    if argv[0] == AUTO:
        from .loader import TargetError, load

        try:
            name = load(argv[1]).runtime
        except TargetError as exc:
            print(exc, file=sys.stderr)
            return 2
    else:
        name = argv[0]
        error = importlib.import_module(RUNTIMES[name]).check(argv[1])
        if error:
            print(error, file=sys.stderr)
            return 2
    print(name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
