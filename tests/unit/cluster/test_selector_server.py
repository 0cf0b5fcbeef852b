"""The operators' servers' shared connection handling, on real sockets and a selector pumped
by the test: one request per connection, the connection limit, the bounded read, the
deadline (a clock given to ``tick``), and the control socket's waiting requests."""
from __future__ import annotations

import json
import selectors
import socket
import time

import pytest

from cluster.ops.control_socket import ControlServer
from cluster.ops.selector_server import Connection, SelectorServer
from cluster.setup.config import Bind
from tests.support.ports import free_port


class _Shout(SelectorServer):
    """Answers a line with the line in capitals; keeps how much each read buffered."""

    def __init__(self, bind: Bind | str, **limits) -> None:
        limits = {"request_limit": 16, "connection_limit": 2, "timeout": 5.0, **limits}
        super().__init__(Bind(socket.AF_UNIX, bind) if isinstance(bind, str) else bind,
                         label="shout", **limits)
        self.buffered: list[int] = []

    def _received(self, conn: Connection) -> None:
        self.buffered.append(len(conn.received))
        line, newline, _ = bytes(conn.received).partition(b"\n")
        if newline or len(conn.received) >= self.request_limit:
            conn.answered = True
            self._send(conn, line.upper() + b"\n" if newline else b"too long\n",
                       close_after=True)


def _pump(selector: selectors.BaseSelector) -> None:
    """Run the callbacks of everything ready, as the master's loop does, until nothing is."""
    while events := selector.select(0):
        for key, mask in events:
            key.data(key.fileobj, mask)


def _connect(path: str) -> socket.socket:
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.settimeout(5)
    client.connect(path)
    return client


def _read_all(client: socket.socket) -> bytes:
    data = b""
    while chunk := client.recv(4096):
        data += chunk
    return data


@pytest.fixture
def selector():
    with selectors.DefaultSelector() as each:
        yield each


@pytest.fixture
def shout(tmp_path, selector):
    server = _Shout(str(tmp_path / "shout"))
    server.open(selector)
    yield server
    server.close()


def test_answers_one_request_per_connection_then_closes(shout, selector):
    client = _connect(str(shout.bind.address))
    _pump(selector)
    client.sendall(b"hello\nmore bytes\n")
    _pump(selector)
    assert _read_all(client) == b"HELLO\n"
    client.close()


def _closed(client: socket.socket) -> bool:
    """Whether the server closed ``client`` (without an answer); never waits."""
    client.setblocking(False)
    try:
        return client.recv(1) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True
    finally:
        client.setblocking(True)


def test_a_new_connection_takes_the_slot_of_the_oldest_slow_one(shout, selector):
    clients = [_connect(str(shout.bind.address)) for _ in range(3)]
    _pump(selector)
    assert [_closed(client) for client in clients] == [True, False, False]
    clients[2].sendall(b"served\n")
    _pump(selector)
    assert _read_all(clients[2]) == b"SERVED\n"
    for client in clients:
        client.close()


def test_the_peer_holding_the_most_slots_gives_one_up(selector):
    listener_port = free_port()
    server = _Shout(Bind(socket.AF_INET, ("127.0.0.1", listener_port)), connection_limit=4)
    server.open(selector)
    try:
        def connect(source: str) -> socket.socket:
            client = socket.create_connection(("127.0.0.1", listener_port), timeout=5,
                                              source_address=(source, 0))
            _pump(selector)
            return client

        prober = connect("127.0.0.3")  # the oldest, but its address holds one slot only
        holders = [connect("127.0.0.2") for _ in range(3)]
        newcomer = connect("127.0.0.4")
        assert [_closed(client) for client in (prober, *holders, newcomer)] == [
            False, True, False, False, False]
        prober.sendall(b"still here\n")
        _pump(selector)
        assert _read_all(prober) == b"STILL HERE\n"
        for client in (prober, *holders, newcomer):
            client.close()
    finally:
        server.close()


def test_a_request_there_at_accept_is_answered_without_the_selector(shout, selector):
    client = _connect(str(shout.bind.address))
    client.sendall(b"at once\n")
    registered = []
    real_register = selector.register
    selector.register = lambda *args: registered.append(args) or real_register(*args)
    _pump(selector)
    assert _read_all(client) == b"AT ONCE\n"
    assert registered == []
    client.close()


def test_the_request_must_arrive_within_the_head_timeout(tmp_path, selector):
    server = _Shout(str(tmp_path / "shout"), head_timeout=1.0, timeout=10.0)
    server.open(selector)
    try:
        silent = _connect(str(server.bind.address))
        _pump(selector)
        server.tick(time.monotonic() + 0.5)
        assert not _closed(silent)
        server.tick(time.monotonic() + 1.5)  # long before the connection's 10 s
        assert _closed(silent)
        silent.close()
    finally:
        server.close()


def test_the_accept_budget_rests_the_listener_until_the_next_tick(tmp_path, selector):
    server = _Shout(str(tmp_path / "shout"), accept_budget=2, connection_limit=10)
    server.open(selector)
    try:
        clients = [_connect(str(server.bind.address)) for _ in range(3)]
        for client in clients:
            client.sendall(b"hi\n")
        _pump(selector)
        answered = [client for client in clients if _readable(client)]
        assert len(answered) == 2  # the third waits in the backlog
        server.tick(time.monotonic())
        _pump(selector)
        assert all(_read_all(client) == b"HI\n" for client in clients)
        for client in clients:
            client.close()
    finally:
        server.close()


def _readable(client: socket.socket) -> bool:
    return bool(selectors.select.select([client], [], [], 0)[0])


def test_the_read_is_bounded_by_the_request_limit(shout, selector):
    client = _connect(str(shout.bind.address))
    _pump(selector)
    client.sendall(b"x" * 100)
    _pump(selector)
    assert shout.buffered == [shout.request_limit + 1]  # one read, bounded; then answered
    assert not shout._connections
    client.close()


def test_a_connection_past_its_deadline_is_closed_on_tick(shout, selector):
    client = _connect(str(shout.bind.address))
    _pump(selector)
    shout.tick(time.monotonic())
    client.setblocking(False)
    with pytest.raises(BlockingIOError):
        client.recv(1)  # still open
    shout.tick(time.monotonic() + shout.timeout + 1)
    client.setblocking(True)
    assert client.recv(1) == b""
    client.close()


class _Master:
    """The master as the control server sees it: facts it can be told to change."""

    def __init__(self) -> None:
        self.size = 1
        self.serving = [0]

    def facts(self) -> dict:
        return {"master": 42, "size": self.size, "stopping": None, "uptime": 1.0,
                "rolling": False, "rolls": {"started": 0, "finished": 0, "failure": None},
                "workers": [{"slot": slot, "state": "serving"} for slot in self.serving]}

    def scale(self, workers: int) -> None:
        self.size = workers

    def reload(self) -> None: ...

    def stop(self, graceful: bool = False) -> None: ...


def _answers(client: socket.socket) -> list[dict]:
    return [json.loads(line) for line in _read_all(client).splitlines()]


@pytest.fixture
def master():
    return _Master()


@pytest.fixture
def control(tmp_path, selector, master):
    server = ControlServer(str(tmp_path / "ctl"), master)
    server.open(selector)
    yield server
    server.close()


def _request(control: ControlServer, selector: selectors.BaseSelector, line: bytes) -> socket.socket:
    """A client connected to ``control`` that sent ``line`` (taken by the server)."""
    client = _connect(control.path)
    _pump(selector)
    client.sendall(line)
    _pump(selector)
    return client


def test_control_answers_a_scale_once_every_slot_serves(control, selector, master):
    client = _request(control, selector, b"scale 2\n")
    control.tick(time.monotonic())
    assert control.waiting  # slot 1 does not serve yet
    master.serving = [0, 1]
    control.tick(time.monotonic() + 3600)  # a waiting request has no deadline
    assert not control.waiting
    assert _answers(client) == [{"ok": True, "done": True,
                                 "message": "master 42: scaled from 1 to 2 workers (all serving)"}]
    client.close()


def test_control_tells_a_waiting_client_that_the_master_stopped(control, selector, tmp_path):
    client = _request(control, selector, b"scale 3\n")
    control.close()
    assert _answers(client) == [{"ok": False, "done": True,
                                 "message": "the master stopped before it was done"}]
    assert not (tmp_path / "ctl").exists()
    client.close()


def test_control_drops_the_waiting_request_of_a_client_that_left(control, selector):
    client = _request(control, selector, b"scale 3\n")
    assert control.waiting
    client.close()
    _pump(selector)
    assert not control.waiting
