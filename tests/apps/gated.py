"""The chat app, but workers wait at import while the file named by ``$GATED_FILE`` exists.

The first import (the master's pre-flight check) creates the file and passes; every
worker then waits (up to 60 s) until the test removes it: a cluster whose workers are
all still booting, for as long as the test wants.
"""
import os
import time

gate = os.environ["GATED_FILE"]
if not os.path.exists(gate + ".checked"):
    open(gate + ".checked", "w").close()
    open(gate, "w").close()
else:
    deadline = time.monotonic() + 60
    while os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.05)

from tests.apps.chat import app, sio  # noqa: E402,F401
