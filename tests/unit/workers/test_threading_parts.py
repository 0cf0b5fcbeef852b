"""The threading worker's parts, without a cluster: the pool, the HTTP request over a
socket pair, the background tasks, the websocket over a socket pair, the poller's timers.
(The bounded inflate of its websockets, shared with gevent: tests/unit/workers/test_limits.py.)"""
from __future__ import annotations

import socket
import threading
import time

from tests.support.waiting import wait_for
from workers.simple_websocket_limits import SOCKET_KEY
from workers.threading.http import (CLOSE, KEEP, TAKEN, Connection, head_end, parse_head,
                                     serve_request)
from workers.threading.pool import ThreadPool
from workers.threading.timers import Timers


# ------------------------------------------------------------------------ the pool

def test_the_pool_is_full_when_every_thread_is_busy_and_gives_back_what_waited_too_long():
    now = [100.0]
    release = threading.Event()
    started = threading.Semaphore(0)

    def run(item):
        started.release()
        release.wait(30)

    pool = ThreadPool(2, run, clock=lambda: now[0])
    pool.submit("a")
    pool.submit("b")
    assert started.acquire(timeout=10) and started.acquire(timeout=10)
    assert pool.busy == 2 and pool.full
    pool.submit("c")
    assert pool.waiting == 1
    now[0] += 2.0
    assert pool.expired(3.0) == []
    now[0] += 2.0
    assert pool.expired(3.0) == ["c"] and pool.waiting == 0
    release.set()


def test_the_pool_starts_threads_only_up_to_its_size_and_runs_everything():
    done = []
    lock = threading.Lock()

    def run(item):
        with lock:
            done.append(item)

    pool = ThreadPool(3, run)
    for item in range(200):
        pool.submit(item)
    wait_for(lambda: len(done) == 200, 30, what="every item to run")
    assert sorted(done) == list(range(200))
    assert pool._threads <= 3


# ------------------------------------------------------------------------ HTTP on a thread

def _request(wire: bytes) -> tuple[Connection, socket.socket]:
    server, client = socket.socketpair()
    conn = Connection(server, ("127.0.0.9", 4242), bytearray(wire))
    assert head_end(conn) is not None
    parse_head(conn)
    return conn, client


def _read_all(sock: socket.socket) -> bytes:
    sock.settimeout(5)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_a_kept_alive_request_is_answered_with_its_length_and_leaves_the_next_bytes():
    seen = {}

    def app(environ, start_response):
        seen.update(environ)
        body = environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"got ", body]

    conn, client = _request(b"POST /p%20q?x=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n"
                            b"X-A: 1\r\nX-A: 2\r\n\r\nabcGET /next")
    assert serve_request(conn, app, {"wsgi.url_scheme": "http"}, 5) == KEEP
    assert bytes(conn.buffer) == b"GET /next"
    conn.sock.close()
    answer = _read_all(client)
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and b"content-length: 7" in answer.lower()
    assert answer.endswith(b"\r\n\r\ngot abc")
    assert (seen["PATH_INFO"], seen["QUERY_STRING"], seen["REMOTE_ADDR"]) == ("/p q", "x=1",
                                                                             "127.0.0.9")
    assert seen["HTTP_X_A"] == "1,2" and seen["CONTENT_LENGTH"] == "3"


def test_a_streamed_answer_is_chunked_and_connection_close_closes():
    def app(environ, start_response):
        start_response("200 OK", [])
        yield b"one"
        yield b"two"

    conn, client = _request(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    assert serve_request(conn, app, {}, 5) == KEEP
    conn.sock.close()
    assert _read_all(client).endswith(b"\r\n\r\n3\r\none\r\n3\r\ntwo\r\n0\r\n\r\n")

    conn, client = _request(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    assert serve_request(conn, app, {}, 5) == CLOSE
    assert b"one" in _read_all(client)


def test_an_exception_is_a_bare_500_and_a_websocket_that_takes_the_socket_is_left_open(caplog):
    def broken(environ, start_response):
        raise RuntimeError("secret")

    conn, client = _request(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    assert serve_request(conn, broken, {}, 5) == CLOSE
    answer = _read_all(client)
    assert answer.startswith(b"HTTP/1.1 500 ") and b"secret" not in answer
    assert "secret" in caplog.text

    def takes(environ, start_response):
        environ[SOCKET_KEY].sendall(b"HTTP/1.1 101 Switching Protocols\r\n\r\n")
        return []

    conn, client = _request(b"GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n"
                            b"Connection: Upgrade\r\n\r\n")
    assert serve_request(conn, takes, {}, 5) == TAKEN
    assert conn.sock.fileno() != -1  # not closed: the websocket owns it
    conn.sock.close()
    assert _read_all(client) == b"HTTP/1.1 101 Switching Protocols\r\n\r\n"


# ------------------------------------------------------------------------ background tasks

def test_a_background_task_runs_at_once_with_its_arguments_and_can_be_joined():
    from workers.threading.tasks import PooledThread
    got = []
    release = threading.Event()

    def work(a, b=None):
        release.wait(30)
        got.append((a, b))

    task = PooledThread(target=work, args=(1,), kwargs={"b": 2})
    task.start()
    assert task.is_alive()
    release.set()
    task.join(30)
    assert got == [(1, 2)] and not task.is_alive()


def test_finished_tasks_threads_run_the_next_tasks():
    from workers.threading import tasks
    idents = []

    def run_one() -> None:
        task = tasks.PooledThread(target=lambda: idents.append(threading.get_ident()))
        task.start()
        task.join(30)

    run_one()
    wait_for(lambda: tasks._pool._idle, 30, what="an idle pool thread")
    idle = len(tasks._pool._idle)
    for _ in range(10):  # one after another: each finds the last one's thread idle
        run_one()
        wait_for(lambda: len(tasks._pool._idle) >= idle, 30, what="the thread idle again")
    assert len(set(idents)) <= idle < 10


def test_tasks_that_wait_on_each_other_each_get_a_thread():
    from workers.threading.tasks import PooledThread
    ping, pong = threading.Event(), threading.Event()
    one = PooledThread(target=lambda: (ping.set(), pong.wait(30)))
    two = PooledThread(target=lambda: (ping.wait(30), pong.set()))
    one.start()
    two.start()
    one.join(30)
    two.join(30)
    assert ping.is_set() and pong.is_set()


def test_each_task_starts_in_a_fresh_context_and_its_exception_reaches_the_thread_hook():
    import contextvars

    from workers.threading.tasks import PooledThread
    var = contextvars.ContextVar("var", default="unset")
    seen = []
    hooked = []
    previous = threading.excepthook
    threading.excepthook = lambda args: hooked.append(args.exc_type)
    try:
        def first():
            var.set("first")
            raise KeyError("boom")

        for target in (first, lambda: seen.append(var.get())):
            task = PooledThread(target=target)
            task.start()
            task.join(30)
    finally:
        threading.excepthook = previous
    assert hooked == [KeyError] and seen == ["unset"]



# ------------------------------------------------------------------------ the websocket

def _websocket_pair(max_message_size: int = 1000):
    """An accepted InlineWebSocket on one end of a socket pair; on the other, the socket
    (past the handshake's answer) and an open wsproto client connection."""
    import base64

    from wsproto.connection import Connection, ConnectionType

    from workers.limits import Pacer, ReceiveBudget
    from workers.threading.websocket import InlineWebSocket
    server_sock, client_sock = socket.socketpair()
    for sock in (server_sock, client_sock):
        sock.settimeout(10)
    environ = {"HTTP_HOST": "x", "HTTP_UPGRADE": "websocket", "HTTP_CONNECTION": "Upgrade",
               "HTTP_SEC_WEBSOCKET_VERSION": "13",
               "HTTP_SEC_WEBSOCKET_KEY": base64.b64encode(b"0123456789abcdef").decode()}
    ws = InlineWebSocket(server_sock, environ, max_message_size, Pacer(ReceiveBudget(1e9, 1e9)),
                         deflate=False)
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += client_sock.recv(1)
    assert answer.startswith(b"HTTP/1.1 101")
    return ws, client_sock, Connection(ConnectionType.CLIENT)


def _events(sock, client, count):
    """The next ``count`` events the server sent to ``client``."""
    got = []
    while len(got) < count:
        client.receive_data(sock.recv(65536))
        got += list(client.events())
    return got


def test_the_websocket_joins_fragments_answers_pings_inline_and_the_clients_close():
    from wsproto.events import CloseConnection, Ping, Pong, TextMessage
    ws, sock, client = _websocket_pair()
    sock.sendall(client.send(TextMessage(data="4hel", message_finished=False))
                 + client.send(Ping(payload=b"p"))
                 + client.send(TextMessage(data="lo")) + client.send(TextMessage(data="4two")))
    assert ws.receive() == "4hello"  # the ping in between answered while reading it
    assert ws.receive() == "4two"
    (pong,) = _events(sock, client, 1)
    assert isinstance(pong, Pong) and pong.payload == b"p"
    ws.send("3")
    (message,) = _events(sock, client, 1)
    assert isinstance(message, TextMessage) and message.data == "3"
    sock.sendall(client.send(CloseConnection(code=1000)))
    assert ws.receive() is None
    (answer,) = _events(sock, client, 1)
    assert isinstance(answer, CloseConnection) and answer.code == 1000
    ws.finish(5)
    assert sock.recv(1) == b""


def test_a_message_over_the_size_is_closed_1009_as_its_pieces_arrive():
    from wsproto.events import CloseConnection, TextMessage
    ws, sock, client = _websocket_pair(max_message_size=1000)
    sock.sendall(client.send(TextMessage(data="4" + "x" * 600, message_finished=False))
                 + client.send(TextMessage(data="x" * 600, message_finished=False)))
    assert ws.receive() is None
    (close,) = _events(sock, client, 1)
    assert isinstance(close, CloseConnection) and close.code == 1009
    ws.finish(5)
    assert sock.recv(1) == b""


# ------------------------------------------------------------------------ the timers

def test_timers_run_what_is_due_in_order_and_wake_the_poller_only_for_an_earlier_one():
    wakes: list[int] = []
    timers = Timers(lambda: wakes.append(1))
    ran: list[str] = []
    assert timers.next_due() is None
    start = time.monotonic()
    timers.call_later(10, ran.append, "late")
    timers.call_later(20, ran.append, "later")  # after the first: the poller waits as it did
    timers.call_later(5, ran.append, "early")
    assert len(wakes) == 2
    timers.run_due(start)
    assert ran == [] and timers.next_due() >= start + 5
    timers.run_due(start + 15)
    assert ran == ["early", "late"]
    timers.run_due(start + 30)
    assert ran == ["early", "late", "later"] and timers.next_due() is None


def test_a_timer_that_raises_is_logged_and_the_others_run(caplog):
    timers = Timers(lambda: None)
    ran: list[int] = []

    def fail() -> None:
        raise RuntimeError("boom")

    timers.call_later(0, fail)
    timers.call_later(0, ran.append, 1)
    timers.run_due(time.monotonic() + 1)
    assert ran == [1]
    assert "a timer's call failed" in caplog.text


def test_timers_set_from_many_threads_all_run():
    timers = Timers(lambda: None)
    ran: list[int] = []
    threads = [threading.Thread(target=lambda n=n: [timers.call_later(0, ran.append, n * 100 + i)
                                                    for i in range(100)]) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    timers.run_due(time.monotonic() + 1)
    assert sorted(ran) == list(range(800))
