"""python-socketio's and python-engineio's log lines go through the cluster's log, once.

A Server made with its default logger gives the ``socketio.server`` or
``engineio.server`` logger a ``StreamHandler`` of its own (to standard error) when the
app creates it, and the records propagate to the root logger's handler as well, which
the master set up (``--log-file``, ``--log-format``): each line came out twice, once
raw. Once the app is loaded, :func:`adopt` removes those handlers; the lines then go
out once, through the root logger's handler. Handlers the app added itself are kept.
"""
from __future__ import annotations

import logging
import sys

LOGGERS = ("socketio.server", "engineio.server", "socketio.client", "engineio.client")
"""The loggers python-socketio and python-engineio give a handler of their own."""


def adopt() -> None:
    """Drop the libraries' own standard error handlers, when the root logger has a handler."""
    if not logging.getLogger().handlers:
        return  # nobody else would write their lines
    for name in LOGGERS:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if type(handler) is logging.StreamHandler and handler.stream in (sys.stderr,
                                                                             sys.__stderr__):
                logger.removeHandler(handler)
