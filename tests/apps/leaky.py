"""The chat app, and an event that leaks memory: a worker that grows until it is recycled."""
import os

from tests.apps.chat import app, sio  # noqa: F401 - served as they are

LEAKED: list[bytes] = []


@sio.event
def leak(sid, megabytes):
    """Keep ``megabytes`` MB for ever (written, so they are resident)."""
    LEAKED.append(b"\x01" * (megabytes * 1024 * 1024))
    return {"pid": os.getpid()}
