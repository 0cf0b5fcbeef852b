"""The vocabulary of ``--access-log-format``: the atoms a line can use and the default line.

The master checks the option with :func:`check_format` when it starts; the workers
write the lines (``workers.access_log``). The format is gunicorn's, plus ``%(slot)s``
and ``%(transport)s``.
"""
from __future__ import annotations

DEFAULT_FORMAT = ('%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" '
                  'slot=%(slot)s transport=%(transport)s %(L)ss')
"""gunicorn's default line, then the slot, the transport and the seconds taken."""

ATOMS = {
    "h": "remote address", "l": "'-'", "u": "user name ('-')", "t": "date of the request",
    "r": "request line", "m": "method", "U": "path", "q": "query string", "H": "protocol",
    "s": "status", "B": "response length", "b": "response length or '-'", "f": "referer",
    "a": "user agent", "T": "seconds (integer)", "M": "milliseconds", "D": "microseconds",
    "L": "seconds (decimal)", "p": "worker pid", "slot": "worker slot",
    "transport": "Engine.IO transport",
}
"""The atoms a format can use, and what each one stands for."""


def check_format(fmt: str) -> str:
    """Return ``fmt`` if it formats with :data:`ATOMS`; raise ValueError naming the problem."""
    try:
        fmt % {name: "x" for name in ATOMS}
    except KeyError as exc:
        raise ValueError(f"unknown atom %({exc.args[0]})s; known: "
                         + ", ".join(ATOMS)) from None
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{fmt!r}: {exc}") from None
    return fmt
