"""The master's hand-off loop in C (cluster/intake/_handoff.c), on real sockets in this process.

Its sid reading must agree with the Python one it stands in for (``request_sid`` then
``owner_of``) on any request line; its loop must send each connection with the packet the
Python loop would send, to the same worker, and leave to Python exactly what it cannot
decide. The end-to-end half (a cluster with each loop) is in tests/e2e/test_routing.py.
"""
from __future__ import annotations

import array
import contextlib
import socket
import time
from typing import Iterator

from hypothesis import given, settings
from hypothesis import strategies as st

from cluster.intake import fast_path
from cluster.protocol import frames
from cluster.protocol.sids import ALPHABET, owner, owner_of, request_sid, sid_prefix

_handoff = fast_path._handoff
HEADER = frames.header(frames.Kind.HANDOFF)


def test_the_c_loop_is_built() -> None:
    """setup.py compiles it wherever the project installs (CI included)."""
    assert _handoff is not None, "cluster/intake/_handoff.c was not compiled at install"


def python_owner(head: bytes) -> int | None:
    sid = request_sid(head)
    return owner_of(sid) if sid else None


SID_CHARS = st.text(ALPHABET, min_size=0, max_size=70)
PARTS = st.sampled_from(["sid=", "EIO=4", "transport=polling", "&", "?", "#", " ", "sid",
                         "%20", "\r", "/socket.io/", "=", "t=Pz1"])


@st.composite
def request_lines(draw) -> bytes:
    """Request lines, sane and not, always ended by an LF (what the C loop decides)."""
    pieces = draw(st.lists(st.one_of(PARTS, SID_CHARS, st.text(max_size=5)), max_size=12))
    method = draw(st.sampled_from(["GET", "POST", "", "G"]))
    line = method + " " + "".join(pieces) + draw(st.sampled_from([" HTTP/1.1", "", " "]))
    end = draw(st.sampled_from(["\r\n", "\n", "\r\nHost: x\r\n\r\n"]))
    return line.encode("utf-8", "surrogatepass") + end.encode()


@settings(max_examples=500, deadline=None)
@given(request_lines())
def test_sid_reading_agrees_with_python(head: bytes) -> None:
    assert _handoff.request_owner(head) == python_owner(head)


@settings(max_examples=200, deadline=None)
@given(st.text(ALPHABET, min_size=20, max_size=20), st.integers(0, 4095),
       st.integers(1, 64 ** 3 - 1), st.booleans())
def test_our_sids_name_their_owner(rest: str, host: int, tag: int, with_more: bool) -> None:
    sid = sid_prefix(tag, host) + rest
    query = f"EIO=4&transport=polling&sid={sid}" + ("&t=x" if with_more else "")
    head = f"GET /socket.io/?{query} HTTP/1.1\r\n".encode()
    assert _handoff.request_owner(head) == owner(tag, host) == python_owner(head)


def test_a_line_not_whole_is_left_to_python() -> None:
    assert _handoff.request_owner(b"GET /socket.io/?EIO=4&sid=AAAAB") == -1
    assert _handoff.request_owner(b"") == -1


# ------------------------------------------------------------------ the loop

@contextlib.contextmanager
def listener() -> Iterator[socket.socket]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, 1)
    sock.listen(64)
    sock.setblocking(False)
    with sock:
        yield sock


def channel() -> tuple[socket.socket, socket.socket]:
    master, worker = frames.socket_pair()
    master.setblocking(False)
    return master, worker


def received(worker: socket.socket) -> tuple[bytes, socket.socket]:
    """One hand-off packet and the client socket it carried."""
    data, ancillary, _flags, _address = worker.recvmsg(256, socket.CMSG_SPACE(4))
    fds = array.array("i")
    fds.frombytes(ancillary[0][2])
    return data, socket.socket(fileno=fds[0])


def run_until(sock: socket.socket, count: int, owners: dict, channels: list, loads: list,
              at_random: bool = False) -> tuple[int, int, list[int], list]:
    """Call the loop until it has accepted ``count`` connections (TCP_DEFER_ACCEPT lets
    one be accepted only once its bytes are there); bounded in time."""
    accepted = by_sid = 0
    placed = [0] * len(channels)
    leftovers: list = []
    deadline = time.monotonic() + 10
    while accepted < count:
        assert time.monotonic() < deadline, f"accepted {accepted} of {count}"
        ok, more, sid_sent, more_placed, left = _handoff.hand_off(
            sock.fileno(), 64, 4096, HEADER, owners, [c.fileno() for c in channels],
            [load + done for load, done in zip(loads, placed)], at_random)
        assert ok
        accepted, by_sid = accepted + more, by_sid + sid_sent
        placed = [a + b for a, b in zip(placed, more_placed)]
        leftovers += left
        if not more:
            time.sleep(0.01)
    return accepted, by_sid, placed, leftovers


def client(port: int, source: str, data: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), source_address=(source, 0))
    sock.sendall(data)
    return sock


def test_the_loop_hands_off_as_the_python_one_would() -> None:
    """A new session goes to the least loaded worker, a request of a session to its owner,
    with the packet Python sends (header, "ip port") and the client's own socket; what it
    cannot decide comes back accepted and untouched, with the client's address."""
    owned = sid_prefix(7) + "x" * 20
    stranger = sid_prefix(9) + "y" * 20
    with listener() as sock, contextlib.ExitStack() as stack:
        ends = [channel() for _ in range(2)]
        for master, worker in ends:
            stack.enter_context(master)
            stack.enter_context(worker)
        port = sock.getsockname()[1]
        clients = [
            client(port, "127.0.3.1", b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\n"),
            client(port, "127.0.3.2", f"POST /socket.io/?EIO=4&sid={owned} HTTP/1.1\r\n".encode()),
            client(port, "127.0.3.3", f"GET /socket.io/?sid={stranger} HTTP/1.1\r\n".encode()),
            client(port, "127.0.3.4", b"GET /socket.io/?EIO=4&sid=AAA"),
        ]
        with contextlib.ExitStack() as closing:
            for each in clients:
                closing.enter_context(each)
            accepted, by_sid, placed, leftovers = run_until(
                sock, 4, {7: ends[0][0].fileno()}, [ends[0][0], ends[1][0]], [3, 0])
            assert (accepted, by_sid, placed) == (4, 1, [0, 1])

            new_packet, new_conn = received(ends[1][1])  # the least loaded: the second
            port_1 = clients[0].getsockname()[1]
            assert new_packet == frames.handoff_packet(("127.0.3.1", port_1))
            owned_packet, owned_conn = received(ends[0][1])  # the sid's owner: the first
            assert owned_packet == frames.handoff_packet(("127.0.3.2", clients[1].getsockname()[1]))
            with new_conn, owned_conn:
                assert new_conn.recv(100).startswith(b"GET /socket.io/?EIO=4&transport")
                new_conn.sendall(b"answer")
                assert clients[0].recv(100) == b"answer"

            assert sorted((address, fd > 0) for fd, address in leftovers) == [
                (("127.0.3.3", clients[2].getsockname()[1]), True),
                (("127.0.3.4", clients[3].getsockname()[1]), True)]
            for fd, _address in leftovers:
                with socket.socket(fileno=fd) as left:
                    assert left.recv(100, socket.MSG_PEEK)  # nothing of it was read


def test_a_full_channel_stops_the_batch_and_leaves_the_connection() -> None:
    """A worker's channel that has no room: the connection comes back to Python (which
    queues it), and the loop stops there, leaving the rest in the backlog."""
    with listener() as sock, contextlib.ExitStack() as stack:
        master, worker = channel()
        stack.enter_context(master)
        stack.enter_context(worker)
        while True:  # fill the channel
            try:
                master.send(b"x" * 512)
            except BlockingIOError:
                break
        port = sock.getsockname()[1]
        first = stack.enter_context(client(port, "127.0.3.5", b"GET /?EIO=4 HTTP/1.1\r\n"))
        accepted, _by_sid, placed, leftovers = run_until(sock, 1, {}, [master], [0])
        assert (accepted, placed) == (1, [0])
        assert [address for _fd, address in leftovers] == [("127.0.3.5", first.getsockname()[1])]
        for fd, _address in leftovers:
            socket.socket(fileno=fd).close()
