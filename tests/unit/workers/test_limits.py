"""The workers' limits as pure decisions: body size, receive budget and pacing, websocket
unmasking, the bounded inflate and the charge of simple-websocket's websockets, the request
head's size."""
from __future__ import annotations

import io
import sys
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

import workers.eventlet.runtime  # noqa: F401 (first: it hushes eventlet's deprecation warning)
from cluster.setup.config import ConfigError, make_settings
from eventlet.websocket import RFC6455WebSocket
from workers.eventlet.websocket import (READ_AHEAD, SMALL_OBJECT_LIMIT, GuardedWebSocket,
                                       MeteredSocket)
from wsproto import ConnectionType, WSConnection
from wsproto.events import (AcceptConnection, BytesMessage, CloseConnection, Ping, Request,
                            TextMessage)
from wsproto.extensions import PerMessageDeflate
from websockets.frames import Frame, Opcode
from workers.asyncio.uvicorn_deflate import ThresholdDeflate
from workers.deflate_settings import THRESHOLD
from workers.gevent.http import read_head
from workers.limits import (FRAME_COST, QUANTUM, HttpLimits, Pacer, ReceiveBudget,
                            body_refusal)
from workers.simple_websocket_limits import BoundedDeflate, cost_of
from tests.support import rawclient

LIMITS = HttpLimits(header_timeout=60, keepalive_timeout=75, max_body=1000)


@pytest.mark.parametrize("method, path, length, chunked, status", [
    ("POST", "/socket.io/?EIO=4&transport=polling&sid=x", "1001", None, b"413"),
    ("POST", "/socket.io/?EIO=4&transport=polling&sid=x", "1000", None, None),
    ("POST", "/socket.io/", None, None, None),
    ("POST", "/socket.io/", None, "chunked", b"411"),
    ("POST", "/socket.io/", "lots", None, None),
    ("GET", "/socket.io/", "5000", None, None),
    ("POST", "/upload", "5000", None, None),
    ("POST", "/upload", None, "chunked", None),
])
def test_only_an_engineio_post_over_the_limit_or_without_a_length_is_refused(
        method, path, length, chunked, status):
    answer = body_refusal(method, path, length, chunked, LIMITS)
    assert (answer and answer[9:12]) == status
    if answer:
        assert b"Connection: close" in answer


def test_the_engineio_path_is_the_apps():
    limits = HttpLimits(60, 75, 1000, engineio_path="/rt/")
    assert body_refusal("POST", "/rt/?sid=x", "2000", None, limits)
    assert not body_refusal("POST", "/socket.io/?sid=x", "2000", None, limits)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_budget_lets_a_burst_through_then_paces_to_its_rate():
    clock = Clock()
    budget = ReceiveBudget(rate=1000, burst=500, clock=clock)
    assert budget.charge(500) == 0
    assert budget.charge(250) == pytest.approx(0.25)
    clock.now += 0.25
    assert budget.charge(0) == 0
    clock.now += 10  # a quiet spell saves up no more than the burst
    assert budget.charge(500) == 0
    assert budget.charge(1000) == pytest.approx(1.0)


def test_a_budget_needs_a_positive_rate_and_burst():
    with pytest.raises(ValueError):
        ReceiveBudget(rate=0, burst=10)


def test_a_pacer_sleeps_past_the_budget_and_yields_every_quantum():
    clock = Clock()
    pacer = Pacer(ReceiveBudget(rate=1000, burst=500, clock=clock), clock=clock)
    assert pacer.charge(100) is None  # within the budget and the quantum: read on
    answers = []
    for _ in range(4):  # reads that follow each other (data is there), 1.5 quantum in all
        clock.now += QUANTUM * 0.375
        answers.append(pacer.charge(1))
    assert answers == [None, None, 0, None]  # within the budget, a quantum of work: yield once
    assert pacer.charge(600) == pytest.approx(0.1965)  # past the budget (7.5 bytes refilled)


def test_a_reader_that_waited_between_two_reads_starts_a_new_quantum():
    """Every client of an echo app waits for its answer before it sends again: its reader
    parks between messages, the others run meanwhile, and it is not made to yield again."""
    clock = Clock()
    pacer = Pacer(ReceiveBudget(rate=1e9, burst=1e9, clock=clock), clock=clock)
    for _ in range(10):
        clock.now += QUANTUM * 1.5  # parked for longer than a quantum
        assert pacer.charge(FRAME_COST) is None


@given(st.binary(max_size=300), st.tuples(*[st.integers(0, 255)] * 4), st.integers(0, 7))
def test_fast_unmasking_matches_eventlets(data, mask, offset):
    assert GuardedWebSocket._apply_mask(data, mask, offset=offset) == \
        RFC6455WebSocket._apply_mask(data, mask, offset=offset)
    assert GuardedWebSocket._apply_mask(data, mask, length=len(data) // 2, offset=offset) == \
        RFC6455WebSocket._apply_mask(data, mask, length=len(data) // 2, offset=offset)


@pytest.mark.parametrize("option", ["header_timeout", "keepalive_timeout", "websocket_rate"])
def test_the_limits_must_be_positive(option):
    with pytest.raises(ConfigError, match=option.replace("_", " ")):
        make_settings("app:sio", **{option: 0})


def deflate_pair(limit: int) -> tuple[WSConnection, WSConnection]:
    """A client and a server that agreed on permessage-deflate, the server's bounded."""
    server, client = WSConnection(ConnectionType.SERVER), WSConnection(ConnectionType.CLIENT)
    server.receive_data(client.send(Request(host="x", target="/",
                                            extensions=[PerMessageDeflate()])))
    (request,) = server.events()
    assert isinstance(request, Request)
    client.receive_data(server.send(AcceptConnection(extensions=[BoundedDeflate(limit)])))
    assert isinstance(next(client.events()), AcceptConnection)
    return client, server


@pytest.mark.parametrize("offer, granted", [
    ("permessage-deflate; client_max_window_bits",  # a browser's
     {"client_max_window_bits=12", "server_max_window_bits=12"}),
    ("permessage-deflate", {"server_max_window_bits=12"}),
    ("permessage-deflate; server_max_window_bits=15; client_max_window_bits=15",
     {"client_max_window_bits=12", "server_max_window_bits=12"}),
    ("permessage-deflate; server_max_window_bits=9; client_max_window_bits=10",
     {"client_max_window_bits=10", "server_max_window_bits=9"}),
])
def test_deflate_windows_are_4_kb_where_the_server_chooses(offer, granted):
    """The gevent and threading workers' answer to an offer: a 4 KB window (12 bits) or the
    smaller one asked for, the client's only where the offer lets the server choose it."""
    assert set(BoundedDeflate(1000).accept(offer).split("; ")) == granted


@pytest.mark.parametrize("size, compressed", [(1, False), (THRESHOLD - 1, False),
                                              (THRESHOLD, True), (20_000, True)])
def test_only_a_message_of_the_threshold_or_more_is_sent_compressed(size, compressed):
    """The gevent and threading workers send a message shorter than the threshold plain
    (RSV1 clear), a longer one compressed; the client reads each as it was sent."""
    client, server = deflate_pair(100_000)
    text = ("0123456789" * (size // 10 + 1))[:size]
    wire = server.send(TextMessage(data=text))
    assert bool(wire[0] & 0x40) is compressed
    assert compressed is (len(wire) < size)
    client.receive_data(wire)
    (message,) = client.events()
    assert message.data == text


@pytest.mark.parametrize("size, compressed", [(1, False), (THRESHOLD - 1, False),
                                              (THRESHOLD, True), (20_000, True)])
def test_uvicorn_websockets_send_only_a_message_of_the_threshold_or_more_compressed(
        size, compressed):
    """The ASGI workers' deflate (uvicorn's websockets-sansio) sends a message shorter than
    the threshold plain and makes no compressor for it; a longer one compressed."""
    deflate = ThresholdDeflate(False, False, 12, 12, {"memLevel": 5})
    data = ("0123456789" * (size // 10 + 1))[:size].encode()
    frame = deflate.encode(Frame(Opcode.TEXT, data))
    assert frame.rsv1 is compressed
    assert ("encoder" in vars(deflate)) is compressed
    if compressed:
        inflated = zlib.decompressobj(-12).decompress(frame.data + b"\x00\x00\xff\xff")
        assert inflated == data and len(frame.data) < size
    else:
        assert frame.data == data


@given(st.integers(1, 5000), st.lists(st.integers(1, 4000), min_size=1, max_size=4),
       st.integers(1, 3000))
def test_a_compressed_message_is_inflated_only_up_to_the_limit(limit, fragments, chunk):
    """Whatever the fragments and however the bytes arrive, a message is delivered whole
    when it inflates to at most ``limit`` bytes, else the connection fails (1009) having
    inflated at most ``limit`` bytes of it."""
    client, server = deflate_pair(limit)
    wire = b"".join(client.send(BytesMessage(data=b"a" * size, message_finished=last))
                    for size, last in zip(fragments, [False] * (len(fragments) - 1) + [True]))
    delivered = 0
    closed = None
    for start in range(0, len(wire), chunk):
        server.receive_data(wire[start:start + chunk])
        for event in server.events():
            if isinstance(event, CloseConnection):
                closed = event.code
            else:
                delivered += len(event.data)
        if closed:
            break
    if sum(fragments) <= limit:
        assert (delivered, closed) == (sum(fragments), None)
    else:
        assert closed == 1009 and delivered <= limit


def test_the_limit_is_per_message():
    client, server = deflate_pair(1000)
    for _ in range(5):
        server.receive_data(client.send(BytesMessage(data=b"b" * 800)))
    assert [event.data for event in server.events()] == [b"b" * 800] * 5


def plain_pair() -> tuple[WSConnection, WSConnection]:
    """A client and a server after a handshake without extensions."""
    server, client = WSConnection(ConnectionType.SERVER), WSConnection(ConnectionType.CLIENT)
    server.receive_data(client.send(Request(host="x", target="/")))
    next(server.events())
    client.receive_data(server.send(AcceptConnection()))
    next(client.events())
    return client, server


@pytest.mark.parametrize("read", [4096, 65536, 1 << 20])
def test_a_frame_is_charged_its_payload_and_the_frame_cost_once_however_it_is_read(read):
    """simple-websocket reads 4 KiB at a time and wsproto makes an event of each piece: the
    pieces of a 400 KB frame cost 400 KB and one :data:`FRAME_COST`; a message in two
    frames, two; a ping, one."""
    client, server = plain_pair()
    wire = (client.send(TextMessage(data="a" * 400_000))
            + client.send(TextMessage(data="b" * 1000, message_finished=False))
            + client.send(TextMessage(data="c" * 1000)) + client.send(Ping()))
    costs = []
    for start in range(0, len(wire), read):
        server.receive_data(wire[start:start + read])
        costs += [cost_of(event) for event in server.events()]
    assert sum(costs) == 402_000 + 4 * FRAME_COST


def test_a_deflate_bomb_frame_is_refused_without_inflating_it():
    _, server = deflate_pair(1_000_000)
    deflater = zlib.compressobj(9, zlib.DEFLATED, -15)
    bomb = deflater.compress(b"a" * 100_000_000) + deflater.flush(zlib.Z_SYNC_FLUSH)
    assert len(bomb) < 200_000
    payload = bomb[:-4]  # permessage-deflate leaves the 00 00 ff ff tail out
    head = bytes([0xC2, 0x80 | 127]) + len(payload).to_bytes(8, "big")  # FIN, RSV1, binary
    server.receive_data(head + bytes(4) + payload)  # a mask of zeros: the payload as is
    events = list(server.events())
    assert [type(event) for event in events] == [CloseConnection], events
    assert events[0].code == 1009


@pytest.mark.parametrize("head, error", [
    (b"Host: x\r\nA: b\r\n\r\nbody", None),
    (b"Host: x\n\n", None),
    (b"X: " + b"a" * 8200 + b"\r\n\r\n", "a header line over 8192 bytes"),
    (b"".join(b"X-%d: %s\r\n" % (n, b"a" * 8000) for n in range(9)) + b"\r\n",
     "request headers over 65536 bytes"),
])
def test_a_request_head_is_read_within_its_limits(head, error):
    source = io.BytesIO(head)
    if error is None:
        assert read_head(source) + source.read() == head
        assert source.tell() == len(head)
    else:
        with pytest.raises(ValueError, match=error):
            read_head(source)


class CutStream:
    """A socket whose ``recv`` hands out a byte stream in the pieces it was cut into (as
    TCP may), counting the reads that reached it."""

    def __init__(self, stream: bytes, cuts: list[int]) -> None:
        ends = sorted({cut for cut in cuts if 0 < cut < len(stream)}) + [len(stream)]
        self.pieces = [stream[start:end] for start, end in zip([0] + ends, ends)]
        self.reads = 0

    def recv(self, size: int) -> bytes:
        self.reads += 1
        if not self.pieces:
            return b""
        piece = self.pieces.pop(0)
        if len(piece) > size:
            self.pieces.insert(0, piece[size:])
        return piece[:size]

    def sendall(self, data: bytes) -> None:  # a pong
        pass


PIPELINED = [(1, b"4hello", True), (1, b"x" * 200, False), (0, b"y" * 70_000, True),
             (9, b"", True), (2, b"\x00" * 125, True), (1, b"42[\"echo\",1]", True)]


def guarded_websocket(sock: CutStream) -> GuardedWebSocket:
    ws = GuardedWebSocket(sock, {}, max_frame_length=1_000_000)
    ws.socket = MeteredSocket(sock, ReceiveBudget(rate=1e12, burst=2e6))
    return ws


@given(st.lists(st.integers(min_value=1, max_value=70_400), max_size=8))
def test_pipelined_frames_come_out_whole_and_in_order_however_the_stream_is_cut(cuts):
    stream = b"".join(rawclient.frame(opcode, payload, fin) for opcode, payload, fin in PIPELINED)
    ws = guarded_websocket(CutStream(stream, cuts))
    messages = [ws.wait() for _ in range(4)]
    assert messages == ["4hello", "x" * 200 + "y" * 70_000, b"\x00" * 125, '42["echo",1]']
    assert ws.wait() is None  # the end of the stream: closed


def test_small_pipelined_frames_take_one_read_of_the_socket_not_three_each():
    stream = b"".join(rawclient.frame(1, b"42[\"echo\",%d]" % n) for n in range(20))
    assert len(stream) <= READ_AHEAD
    sock = CutStream(stream, [])
    ws = guarded_websocket(sock)
    assert [ws.wait() for _ in range(20)] == ['42["echo",%d]' % n for n in range(20)]
    assert sock.reads == 1


def test_a_read_ahead_fits_an_object_of_pythons_own_allocator():
    """Each ``recv`` allocates its size first: a read-ahead served by malloc left idle
    clients' heap pages spread out (docs/benchmarks.md, memory per idle client)."""
    assert sys.getsizeof(b"x" * READ_AHEAD) <= SMALL_OBJECT_LIMIT
