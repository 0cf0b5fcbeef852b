"""An app that reads a setting that is not there at import: ``os.environ`` raises in os.py,
called from line 6 of this file."""
import os

from tests.apps.chat import app, sio  # noqa: F401
DATABASE = os.environ["STICKY_TEST_MISSING_SETTING"]
