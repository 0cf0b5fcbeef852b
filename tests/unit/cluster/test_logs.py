"""Log escaping: no record, ours or a library's, can forge a line or reach the terminal raw."""
from __future__ import annotations

import io
import json
import logging

import pytest
from hypothesis import given, strategies as st

from cluster.setup import logs


@pytest.mark.parametrize("text, escaped", [
    ("plain text, é and 日本", "plain text, é and 日本"),
    ("\x1b[31mred", "\\x1b[31mred"),
    ("a\r\nFORGED", "a\\r\\nFORGED"),
    ("\x00\x07\t\x7f\x85\x9b", "\\x00\\x07\\t\\x7f\\x85\\x9b"),
    ("line\u2028sep", "line\\u2028sep"),
])
def test_escape(text, escaped):
    assert logs.escape(text) == escaped


@given(st.text())
def test_escaped_text_has_no_control_character(text):
    escaped = logs.escape(text)
    assert not any(ord(c) < 0x20 or 0x7f <= ord(c) < 0xa0 or c in "\u2028\u2029" for c in escaped)


@pytest.fixture
def restore_logging():
    """Put the test process's logging back as it was."""
    root = logging.getLogger()
    handlers, level, factory = list(root.handlers), root.level, logging.getLogRecordFactory()
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.setLogRecordFactory(factory)


def test_every_handler_gets_escaped_records_and_tracebacks_are_indented(restore_logging):
    logs.configure_logging("info", None)
    ours, theirs = io.StringIO(), io.StringIO()
    logging.getLogger().handlers[0].stream = ours
    library = logging.getLogger("engineio.server.test")
    library.addHandler(logging.StreamHandler(theirs))  # as python-engineio adds its own
    try:
        library.error("Invalid session %s", "\x1b[31mX\r\nFORGED: yes")
        try:
            raise ValueError("bad\n[2026-01-01 00:00:00,000] [1] [INFO] forged")
        except ValueError:
            logging.getLogger("x").exception("failed")
    finally:
        library.handlers.clear()
    assert theirs.getvalue() == "Invalid session \\x1b[31mX\\r\\nFORGED: yes\n"
    lines = ours.getvalue().splitlines()
    assert lines[0].endswith("[ERROR] Invalid session \\x1b[31mX\\r\\nFORGED: yes")
    assert lines[1].endswith("[ERROR] failed")
    assert all(line.startswith("  ") for line in lines[2:])
    assert lines[-1] == "  [2026-01-01 00:00:00,000] [1] [INFO] forged"


def test_every_record_and_traceback_is_logged_without_passwords(restore_logging):
    adapter = "redis://cache.internal:6379/0?password=ad-Pa55"
    logs.configure_logging("info", None, secret_url=adapter)
    out = io.StringIO()
    logging.getLogger().handlers[0].stream = out
    log = logging.getLogger("sticky_cluster.worker")
    log.error("worker 7 failed to boot: cannot reach %s", "postgresql://app:pg-Pa55@db/app")
    log.warning("AUTH ad-Pa55 refused")  # the adapter's password alone, as a library may say it
    try:
        raise RuntimeError("no amqp://guest:mq-Pa55@rabbit// nor unix:///run/r.sock?password=ux-Pa55")
    except RuntimeError:
        log.exception("boot failed")
    text = out.getvalue()
    assert "Pa55" not in text
    assert "postgresql://app:***@db/app" in text and "AUTH *** refused" in text
    assert "amqp://guest:***@rabbit//" in text and "unix:///run/r.sock?password=***" in text


LIFESPAN = ("Traceback (most recent call last):\n"
            '  File "app.py", line 13, in lifespan\n'
            '    raise ConnectionRefusedError("no database")\n'
            "ConnectionRefusedError: no database\n")
"""What uvicorn logs as the message when an app's lifespan startup raises."""


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_traceback_logged_as_a_message_is_shown_as_a_traceback(restore_logging, log_format):
    logs.configure_logging("info", None, log_format=log_format)
    out = io.StringIO()
    logging.getLogger().handlers[0].stream = out
    logging.getLogger("uvicorn.error").error(LIFESPAN)
    lines = out.getvalue().splitlines()
    if log_format == "text":
        assert lines[0].endswith("[ERROR] ConnectionRefusedError: no database")
        assert lines[1:] == ["  " + line for line in LIFESPAN.splitlines()]
    else:
        assert len(lines) == 1
        record = json.loads(lines[0])
        assert record["message"] == "ConnectionRefusedError: no database"
        assert record["exc_info"] == LIFESPAN.rstrip()
