"""The master <-> worker messages (cluster.protocol.frames): framing, reassembly and the worker-message parsers.

Whatever bytes a worker sends, the master's parsers either return a value or raise
ProtocolError: never anything else.
"""
from __future__ import annotations

import socket

import pytest
from hypothesis import given, strategies as st

from cluster.protocol import frames
from cluster.protocol.frames import Heartbeat, Kind, ProtocolError, Reassembler

WORKER_KINDS = (Kind.READY, Kind.HEARTBEAT, Kind.PUBLISH, Kind.PUBLISH_TO, Kind.BOOT_FAILED)


def reassemble(packets: list[bytes], limit: int = frames.MAX_MESSAGE):
    reassembler = Reassembler(limit)
    out = [reassembler.feed(packet) for packet in packets]
    return [message for message in out if message is not None]


@given(st.sampled_from(list(Kind)), st.binary(max_size=3 * frames.MAX_FRAGMENT + 7))
def test_packets_reassemble_to_the_message(kind, payload):
    assert reassemble(frames.packets(kind, payload)) == [(kind, payload)]


def test_fragments_of_another_kind_are_refused():
    publish = frames.packets(Kind.PUBLISH, b"x" * (frames.MAX_FRAGMENT + 1))
    with pytest.raises(ProtocolError, match="HEARTBEAT fragment inside an unfinished PUBLISH"):
        reassemble([publish[0], *frames.packets(Kind.HEARTBEAT, b"3")])


def test_a_message_past_the_limit_is_refused_before_it_is_joined():
    packet = bytes((Kind.PUBLISH, 1)) + b"x" * 1000
    reassembler = Reassembler(limit=2500)
    assert reassembler.feed(packet) is None
    assert reassembler.feed(packet) is None
    with pytest.raises(ProtocolError, match="PUBLISH message over 2500 bytes"):
        reassembler.feed(packet)
    assert reassembler.feed(bytes((Kind.READY, 0))) == (Kind.READY, b"")  # empty again


def test_packets_refuses_what_the_other_end_would_refuse():
    with pytest.raises(ProtocolError, match="over"):
        frames.packets(Kind.PUBLISH, bytes(frames.MAX_MESSAGE + 1))


@pytest.mark.parametrize("packet, message", [
    (b"", "short channel packet"),
    (b"\x03", "short channel packet"),
    (b"\xc8\x00", "unknown message kind 200"),
    (b"\x00\x00", "unknown message kind 0"),
    (b"\x03\x02", "bad fragment flags"),
])
def test_malformed_packets_are_refused(packet, message):
    with pytest.raises(ProtocolError, match=message):
        Reassembler().feed(packet)


@pytest.mark.parametrize("payload, sessions, connections, full",
                         [(b"0 0 0", 0, 0, 0), (b"12 30 1", 12, 30, 1),
                          (b"2147483647 1 0", 2**31 - 1, 1, 0)])
def test_heartbeat_parses_counts(payload, sessions, connections, full):
    assert Heartbeat.parse(payload) == Heartbeat(sessions, connections, full)
    assert Heartbeat(sessions, connections, full).encode() == payload


def test_a_heartbeat_of_before_the_full_field_is_not_full():
    assert Heartbeat.parse(b"12 30") == Heartbeat(12, 30, 0)


def test_heartbeat_of_sessions_only_has_no_connections():
    assert Heartbeat.parse(b"12") == Heartbeat(12, 0)


@pytest.mark.parametrize("payload", [b"", b" ", b"-1", b"+1", b"1.5", b"1 2 3 4", b"1  2", b"2147483648",
                                     b"\xd9\xa3", b"\x1b[31m1", b"1\n", b"99999999999999999999"])
def test_heartbeat_refuses_anything_but_counts(payload):
    with pytest.raises(ProtocolError):
        Heartbeat.parse(payload)


@pytest.mark.parametrize("kind", [Kind.HANDOFF, Kind.DELIVER, Kind.DRAIN])
def test_master_kinds_from_a_worker_are_refused(kind):
    with pytest.raises(ProtocolError, match=f"{kind.name} is not a message a worker sends"):
        frames.parse_from_worker(kind, b"")


def test_worker_messages_parse_to_their_values():
    assert frames.parse_from_worker(Kind.READY, b"") is None
    assert frames.parse_from_worker(Kind.PUBLISH, b"abc") == b"abc"
    tag, payload = frames.parse_from_worker(Kind.PUBLISH_TO, frames.addressed(7, b"abc"))
    assert (tag, bytes(payload)) == (7, b"abc")
    assert frames.parse_from_worker(Kind.BOOT_FAILED, "é".encode() * 5000) == "é" * 1000
    with pytest.raises(ProtocolError, match="READY with a 1-byte payload"):
        frames.parse_from_worker(Kind.READY, b"x")
    with pytest.raises(ProtocolError, match="no worker tag"):
        frames.parse_from_worker(Kind.PUBLISH_TO, b"x" * (frames.TAG_BYTES - 1))


def test_the_forwarders_hosts_message_is_a_json_object_of_at_most_64_kib():
    facts = {"hosts": {"2": "127.0.0.12:8000"}, "peers": {}, "refused": {"loop": 1}}
    assert frames.parse_from_worker(Kind.HOSTS, b'{"hosts": {"2": "127.0.0.12:8000"}, '
                                    b'"peers": {}, "refused": {"loop": 1}}') == facts
    for payload, reason in [(b"[1]", "a JSON list, not an object"), (b"{", "not JSON"),
                            (b"\xff", "not JSON"), (b"[" * 60000, "not JSON"),
                            (b'{"a": "' + b"x" * frames.MAX_HOSTS + b'"}', "over 65536 bytes")]:
        with pytest.raises(ProtocolError, match=reason):
            frames.parse_from_worker(Kind.HOSTS, payload)


@given(st.lists(st.binary(max_size=80), max_size=12))
def test_any_bytes_from_a_worker_give_a_message_or_a_protocol_error(packets):
    reassembler = Reassembler(limit=200)
    for packet in packets:
        try:
            message = reassembler.feed(packet)
            if message is not None:
                frames.parse_from_worker(*message)
        except ProtocolError:
            pass


@pytest.mark.parametrize("address", [("10.1.2.3", 4567), ("::1", 1), ("", 0)])
def test_a_hand_off_packet_reads_back_as_the_address_it_carries(address: tuple[str, int]) -> None:
    packet = frames.handoff_packet(address)
    assert packet.startswith(frames.header(Kind.HANDOFF))
    assert frames.decode_address(frames.payload_of(packet)) == address
    assert Reassembler().feed(packet) == (Kind.HANDOFF, frames.encode_address(address))


def test_a_resume_packet_reads_back_as_the_address_and_the_bytes_read() -> None:
    packet = frames.resume_packet(("10.1.2.3", 80), b"GET / HTTP/1.1\r\n")
    assert packet.startswith(frames.header(Kind.RESUME))
    assert frames.split_resumed(frames.payload_of(packet)) == (("10.1.2.3", 80), b"GET / HTTP/1.1\r\n")


def test_a_packet_reader_gives_each_packet_whole_with_its_fd_and_the_end_as_empty():
    """A worker's reader (one buffer for every read) gives what was sent, packet by packet,
    from 1 byte to the largest, a passed socket as a new fd, and b"" once the peer is gone."""
    master_end, worker_end = frames.socket_pair()
    reader = frames.PacketReader(worker_end)
    largest = b"z" * (frames.RECV_SIZE)
    passed, kept = socket.socketpair()
    try:
        frames.send_packet(master_end, b"a")
        frames.send_packet(master_end, largest)
        frames.send_packet(master_end, b"with a socket", passed.fileno())
        assert reader.receive() == (b"a", None)
        assert reader.receive() == (largest, None)
        packet, fd = reader.receive()
        assert packet == b"with a socket" and fd is not None
        with socket.socket(fileno=fd) as received:
            received.sendall(b"ping")
            assert kept.recv(4) == b"ping"
        master_end.close()
        assert reader.receive() == (b"", None)
    finally:
        for sock in (master_end, worker_end, passed, kept):
            sock.close()
