"""The chat app, but its import blocks while the file named by ``$STUCK`` exists.

A test creates the file to catch workers while they boot (and removes it to let them
go on), or before the start to block the master's start-up check. With
``$STUCK_AFTER_CHECK`` set, the first import (the start-up check) passes and creates
the file: every worker then blocks at import, as an app waiting for a service that
does not answer.
"""
import os
import time

stuck = os.environ["STUCK"]
if os.environ.get("STUCK_AFTER_CHECK") and not os.path.exists(stuck):
    open(stuck, "w").close()  # the check passes; the workers block
else:
    while os.path.exists(stuck):
        time.sleep(0.1)

from tests.apps.chat import app, sio  # noqa: E402,F401
