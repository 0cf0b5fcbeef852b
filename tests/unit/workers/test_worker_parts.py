"""The runtime-neutral worker parts, on real sockets: the inbox, the asyncio link, the green
link (with a hub of plain calls), the peer. The asyncio hand-back, and a forked worker whose
channel reader fails: tests/e2e/test_worker_parts.py."""
from __future__ import annotations

import asyncio
import os
import socket

import pytest

from tests.support.worker_links import handoff, plain_hub, refuse_client
from cluster.protocol import frames
from cluster.protocol.frames import Kind
from workers.asyncio.link import AsyncMasterLink
from workers.green_link import GreenMasterLink
from workers.inbox import Inbox
from workers.asyncio.peer import PeerTransport, _needs_peer


def test_inbox_hands_clients_on_and_closes_those_after_drain():
    master_end, worker_end = frames.socket_pair()
    got = []
    inbox = Inbox(lambda sock, address, preface: got.append((sock, address, preface)))
    client = handoff(master_end, ("10.1.2.3", 4567))
    inbox.feed(*frames.receive_packet(worker_end))
    [(sock, address, preface)] = got
    assert address == ("10.1.2.3", 4567) and preface == b""
    sock.sendall(b"ping")
    assert client.recv(4) == b"ping"
    sock.close()
    inbox.closed = True
    late = handoff(master_end, ("10.1.2.4", 1))
    inbox.feed(*frames.receive_packet(worker_end))
    assert len(got) == 1
    late.settimeout(5)
    assert late.recv(1) == b""  # the worker closed it
    for sock in (client, late, master_end, worker_end):
        sock.close()


def test_inbox_serves_a_resumed_client_with_the_bytes_read_before():
    master_end, worker_end = frames.socket_pair()
    got = []
    inbox = Inbox(lambda sock, address, preface: got.append((sock, address, preface)))
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    served, _ = listener.accept()
    listener.close()
    data = b"GET /socket.io/?EIO=4&transport=polling&sid=x HTTP/1.1\r\n\r\n"
    frames.send_packet(master_end, frames.resume_packet(("10.1.2.5", 99), data), served.fileno())
    served.close()
    inbox.feed(*frames.receive_packet(worker_end))
    [(sock, address, preface)] = got
    assert (address, preface) == (("10.1.2.5", 99), data)
    sock.sendall(b"pong")
    assert client.recv(4) == b"pong"
    for each in (sock, client, master_end, worker_end):
        each.close()


def test_asyncio_link_hands_back_a_copy_of_the_socket_that_outlives_the_original():
    master_end, worker_end = frames.socket_pair()
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    served, _ = listener.accept()
    listener.close()

    async def main():
        link = AsyncMasterLink(worker_end, lambda *_: None, asyncio.get_running_loop())
        link.hand_back(served.fileno(), ("10.1.2.6", 7), b"GET / HTTP/1.1\r\n")
        served.close()  # the worker's own copy, closed at once without a shutdown

    asyncio.run(main())
    packet, fd = frames.receive_packet(master_end)
    assert fd is not None
    kind, payload = frames.Reassembler().feed(packet)
    assert kind is Kind.HANDBACK
    assert frames.parse_from_worker(kind, payload) == (("10.1.2.6", 7), b"GET / HTTP/1.1\r\n")
    with socket.socket(fileno=fd) as passed:
        passed.sendall(b"still open")
        assert client.recv(10) == b"still open"
    for each in (client, master_end, worker_end):
        each.close()


def test_inbox_joins_fragments_and_delivers():
    master_end, worker_end = frames.socket_pair()
    delivered = []
    inbox = Inbox(lambda *_: None)
    inbox.on_deliver = delivered.append
    payload = bytes(range(256)) * 1000  # 256 KB: five fragments
    for packet in frames.packets(Kind.DELIVER, payload):
        frames.send_packet(master_end, packet)
    for _ in range(len(frames.packets(Kind.DELIVER, payload))):
        inbox.feed(*frames.receive_packet(worker_end))
    assert delivered == [payload]
    master_end.close()
    worker_end.close()


def test_asyncio_link_queues_what_a_full_channel_cannot_take_and_keeps_the_order():
    master_end, worker_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    worker_end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)

    async def main():
        link = AsyncMasterLink(worker_end, lambda *_: None, asyncio.get_running_loop())
        for number in range(2000):
            link.send(Kind.HEARTBEAT, str(number).encode())
        master_end.setblocking(False)
        received = []
        reassembler = frames.Reassembler()
        readable = asyncio.Event()
        asyncio.get_running_loop().add_reader(master_end.fileno(), readable.set)
        while len(received) < 2000:
            try:
                packet, _fd = frames.receive_packet(master_end)
            except BlockingIOError:
                readable.clear()
                await asyncio.wait_for(readable.wait(), 30)
                continue
            kind, payload = reassembler.feed(packet)
            received.append(int(payload))
        asyncio.get_running_loop().remove_reader(master_end.fileno())
        return received

    assert asyncio.run(main()) == list(range(2000))
    master_end.close()
    worker_end.close()


def test_peer_transport_reports_the_handed_off_address():
    class Transport:
        def get_extra_info(self, name, default=None):
            return {"peername": ("127.0.0.1", 1), "sockname": ("127.0.0.1", 5000),
                    "socket": object()}.get(name, default)

        def write(self, data):
            return data

    transport = PeerTransport(Transport(), ("203.0.113.9", 4444))
    assert transport.get_extra_info("peername") == ("203.0.113.9", 4444)
    assert transport.get_extra_info("socket") is None
    assert transport.get_extra_info("sockname") == ("127.0.0.1", 5000)
    assert transport.write(b"x") == b"x"


def test_only_a_differing_address_needs_a_peer_transport():
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    served, peer = listener.accept()
    assert not _needs_peer(served, peer)
    assert _needs_peer(served, ("198.51.100.7", peer[1]))
    assert not _needs_peer(served, ("", 0))  # a Unix-socket client
    for sock in (listener, client, served):
        sock.close()


class _Stop(BaseException):
    """Ends a link's read loop from the hub's wait."""


def test_green_link_reads_in_the_hubs_green_thread_and_waits_through_the_hub():
    master_end, worker_end = frames.socket_pair()
    got = []

    def nothing_more(fd: int) -> None:
        raise _Stop

    spawned: list = []
    link = GreenMasterLink(worker_end, lambda *client: got.append(client),
                           plain_hub(spawned, read=nothing_more))
    link.start()
    client = handoff(master_end, ("10.1.2.7", 8))
    [read_forever] = spawned
    with pytest.raises(_Stop):  # it reads the hand-off, then waits for more through the hub
        read_forever()
    [(sock, address, preface)] = got
    assert (address, preface) == (("10.1.2.7", 8), b"")
    sock.sendall(b"hi")
    assert client.recv(2) == b"hi"
    for each in (sock, client, master_end, worker_end):
        each.close()


def test_green_link_waits_through_the_hub_while_the_channel_is_full_and_keeps_the_order():
    master_end, worker_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    worker_end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    master_end.setblocking(False)
    received, waits = [], []
    reassembler = frames.Reassembler()

    def master_reads(fd: int) -> None:  # the master empties the channel while the link waits
        waits.append(fd)
        while True:
            try:
                packet, _fd = frames.receive_packet(master_end)
            except BlockingIOError:
                return
            kind, payload = reassembler.feed(packet)
            received.append(int(payload))

    link = GreenMasterLink(worker_end, lambda *_: None, plain_hub(write=master_reads))
    for number in range(2000):
        link.send(Kind.HEARTBEAT, str(number).encode())
    master_reads(-1)
    assert waits[0] == worker_end.fileno()
    assert received == list(range(2000))
    master_end.close()
    worker_end.close()


def test_green_link_drops_a_message_over_the_limit_and_closes_its_fd():
    master_end, worker_end = frames.socket_pair()
    link = GreenMasterLink(worker_end, lambda *_: None, plain_hub())
    spare = os.dup(master_end.fileno())
    link.send(Kind.PUBLISH, b"x" * (frames.MAX_MESSAGE + 1), spare)
    with pytest.raises(OSError):
        os.fstat(spare)
    master_end.setblocking(False)
    with pytest.raises(BlockingIOError):
        frames.receive_packet(master_end)
    master_end.close()
    worker_end.close()


def test_asyncio_link_drops_a_message_over_the_limit_and_closes_its_fd():
    master_end, worker_end = frames.socket_pair()
    spare = os.dup(master_end.fileno())

    async def scenario() -> None:
        link = AsyncMasterLink(worker_end, lambda *_: None, asyncio.get_running_loop())
        link.send(Kind.PUBLISH, b"x" * (frames.MAX_MESSAGE + 1), spare)
        link.send(Kind.HEARTBEAT, b"1 1")  # the link goes on

    asyncio.run(scenario())
    with pytest.raises(OSError):
        os.fstat(spare)
    packet, _fd = frames.receive_packet(master_end)
    assert packet == frames.packets(Kind.HEARTBEAT, b"1 1")[0]
    master_end.close()
    worker_end.close()


def test_a_handed_off_tcp_client_sends_without_delay_and_a_unix_one_is_left_alone():
    """TCP_NODELAY on every TCP client a worker takes: gevent's pywsgi writes a response's
    head and body in two sends, and Nagle's algorithm held the second for the client's
    delayed ACK (44 ms per POST on a kept-alive connection; 0.9 ms with it)."""
    taken: list[socket.socket] = []
    inbox = Inbox(lambda client, _address, _preface: taken.append(client))
    with socket.create_server(("127.0.0.1", 0)) as server:
        with socket.create_connection(server.getsockname()) as _far_end:
            accepted, address = server.accept()
            assert not accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            inbox.feed(frames.handoff_packet(address), accepted.detach())
            unix_far, unix_near = socket.socketpair()
            inbox.feed(frames.handoff_packet(("", 0)), unix_near.detach())
    tcp_client, unix_client = taken
    assert tcp_client.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    assert unix_client.family == socket.AF_UNIX
    for sock in (tcp_client, unix_client, unix_far):
        sock.close()


def test_a_hand_off_whose_socket_did_not_arrive_is_logged_once_per_burst(caplog):
    """Out of file descriptors, the kernel drops the fd of a hand-off: say so, not per client."""
    master_end, worker_end = frames.socket_pair()
    inbox = Inbox(refuse_client)
    for _ in range(50):
        frames.send_packet(master_end, frames.handoff_packet(("10.1.2.10", 1)))
        inbox.feed(*frames.receive_packet(worker_end))
    lost = [r.getMessage() for r in caplog.records if "did not arrive" in r.getMessage()]
    assert lost == [f"worker {os.getpid()}: a client's socket did not arrive with its hand-off "
                    "(out of file descriptors? raise ulimit -n): the client is lost"]
    assert inbox.lost.count == 50
    master_end.close()
    worker_end.close()
