"""The runtime-neutral worker parts, on real sockets: the inbox, the asyncio link, the peer."""
from __future__ import annotations

import asyncio
import socket

from cluster import channel
from cluster.channel import Kind
from workers.asyncio_link import AsyncMasterLink
from workers.inbox import Inbox
from workers.peer import PeerTransport, _needs_peer


def _handoff(master_end: socket.socket, address: tuple[str, int]) -> socket.socket:
    """Hand one end of a fresh TCP connection over ``master_end``; return the other end."""
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    served, _ = listener.accept()
    listener.close()
    channel.send_packet(master_end, channel.handoff_packet(address), served.fileno())
    served.close()
    return client


def test_inbox_hands_clients_on_and_closes_those_after_drain():
    master_end, worker_end = channel.socket_pair()
    got = []
    inbox = Inbox(lambda sock, address: got.append((sock, address)))
    client = _handoff(master_end, ("10.1.2.3", 4567))
    inbox.feed(*channel.receive_packet(worker_end))
    [(sock, address)] = got
    assert address == ("10.1.2.3", 4567)
    sock.sendall(b"ping")
    assert client.recv(4) == b"ping"
    sock.close()
    inbox.closed = True
    late = _handoff(master_end, ("10.1.2.4", 1))
    inbox.feed(*channel.receive_packet(worker_end))
    assert len(got) == 1
    late.settimeout(5)
    assert late.recv(1) == b""  # the worker closed it
    for sock in (client, late, master_end, worker_end):
        sock.close()


def test_inbox_joins_fragments_and_delivers():
    master_end, worker_end = channel.socket_pair()
    delivered = []
    inbox = Inbox(lambda *_: None)
    inbox.on_deliver = delivered.append
    payload = bytes(range(256)) * 1000  # 256 KB: five fragments
    for packet in channel.frames(Kind.DELIVER, payload):
        channel.send_packet(master_end, packet)
    for _ in range(len(channel.frames(Kind.DELIVER, payload))):
        inbox.feed(*channel.receive_packet(worker_end))
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
        reassembler = channel.Reassembler()
        readable = asyncio.Event()
        asyncio.get_running_loop().add_reader(master_end.fileno(), readable.set)
        while len(received) < 2000:
            try:
                packet, _fd = channel.receive_packet(master_end)
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
