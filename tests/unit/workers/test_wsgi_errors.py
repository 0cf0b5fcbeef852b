"""The worker's WSGI error guard (workers.wsgi_errors): errors logged, never sent; the
request's ``wsgi.errors`` is the worker's log."""
from __future__ import annotations

import logging
import sys

from workers.wsgi_errors import log_errors


def call(app, environ=None):
    """Run ``app`` as a WSGI server would: its status and body."""
    seen = {}

    def start_response(status, headers, exc_info=None):
        seen["status"] = status

    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/x", "wsgi.errors": sys.stderr,
               **(environ or {})}
    body = b"".join(log_errors(app)(environ, start_response))
    return seen["status"], body


def test_an_exception_is_logged_and_answered_500_without_a_body(caplog):
    def broken(environ, start_response):
        raise RuntimeError("secret detail")

    status, body = call(broken)
    assert status.startswith("500") and body == b""
    assert "GET /x failed" in caplog.text and "secret detail" in caplog.text


def test_what_the_app_writes_to_wsgi_errors_is_one_log_line_each(caplog, capsys):
    def chatty(environ, start_response):
        environ["wsgi.errors"].write("disk almost full")  # no newline, as eventlet writes
        environ["wsgi.errors"].writelines(["one\n", "two\n"])
        environ["wsgi.errors"].flush()
        start_response("200 OK", [])
        return [b"ok"]

    with caplog.at_level(logging.DEBUG, logger="sticky_cluster.worker"):
        assert call(chatty) == ("200 OK", b"ok")
    lines = [(r.levelno, r.getMessage().split(": ", 1)[1]) for r in caplog.records]
    assert lines == [(logging.WARNING, "disk almost full"), (logging.WARNING, "one"),
                     (logging.WARNING, "two")]
    assert capsys.readouterr().err == ""  # nothing around the log


def test_eventlets_socket_shutdown_error_is_debug(caplog):
    def closing(environ, start_response):
        environ["wsgi.errors"].write("server=x client=y socket shutdown error: [Errno 9] "
                                     "Bad file descriptor")
        start_response("200 OK", [])
        return [b""]

    with caplog.at_level(logging.DEBUG, logger="sticky_cluster.worker"):
        call(closing)
    assert [r.levelno for r in caplog.records] == [logging.DEBUG]
