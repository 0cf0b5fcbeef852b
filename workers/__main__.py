"""``python -m workers RUNTIME TARGET``: load the app as a worker of RUNTIME would.

The master runs this in a subprocess before it forks anything, so that a wrong target
is one clear line and a non-zero exit, and the master itself never imports the app.
RUNTIME ``auto`` loads the target without any monkey-patching and prints the name of
the runtime it needs on standard output; a named RUNTIME loads it the way that
runtime's workers do and fails when the target needs another one.

Before its last line, standard output may hold warnings for the user (lines that start
with :data:`cluster.protocol.spec.CHECK_WARNING`); on a failure, standard error holds the traceback of the app's
error, if there is one, before the one-line error (the master logs it at debug level).
"""
from __future__ import annotations

import sys
import traceback

from cluster.protocol.spec import AUTO, CHECK_WARNING, RUNTIMES, runtime_class


def main(argv: list[str]) -> int:
    """Entry point; returns the exit code (0: the target loads, 2: it does not)."""
    if len(argv) != 2 or argv[0] not in (AUTO, *RUNTIMES):
        print(f"usage: python -m workers {{{AUTO},{','.join(RUNTIMES)}}} MODULE:ATTR", file=sys.stderr)
        return 2
    from .loader import TargetError, load, warnings

    try:
        if argv[0] == AUTO:
            name = load(argv[1]).runtime
        else:
            name = argv[0]
            error = runtime_class(name).check(argv[1])
            if error:
                raise TargetError(error)
        notes = warnings(argv[1])
    except TargetError as exc:
        if exc.__cause__ is not None:
            traceback.print_exception(exc.__cause__, file=sys.stderr)
        print(exc, file=sys.stderr)
        return 2
    for note in notes:
        print(CHECK_WARNING + note)
    print(name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
