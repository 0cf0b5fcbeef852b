"""The chat app, but its import fails while the file named by ``$FLAKY_BROKEN`` exists.

The failure says what the file holds. With ``$FLAKY_BREAK_AFTER_CHECK`` set, the first
import (the master's pre-flight check) passes and creates the file, so every worker
then fails: a deploy that breaks between the check and the fork.
"""
import os

broken = os.environ["FLAKY_BROKEN"]
if os.path.exists(broken):
    with open(broken) as src:
        raise RuntimeError(f"the app is broken: {src.read().strip()}")
if os.environ.get("FLAKY_BREAK_AFTER_CHECK"):
    with open(broken, "w") as out:
        out.write("broken after the check")

from tests.apps.chat import app, sio  # noqa: E402,F401
