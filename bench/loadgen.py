"""Lean Socket.IO load generator: asyncio + raw sockets, hand-written websocket framing.

    python -m bench.loadgen SCENARIO --url http://127.0.0.1:PORT [options]

Scenarios (each prints ONE JSON line of results to stdout; ``idle`` prints two):

* ``handshake`` -- for ``--seconds`` (and at most ``--max`` attempts), ``--concurrency``
  loops each open a NEW TCP connection from a rotating source 127.0.1.1..127.0.1.K
  (``--sources K``), send ``GET <path>?EIO=4&transport=polling`` (Connection: close),
  read the Engine.IO open packet ``0{"sid":...}`` and close.
* ``echo`` -- ``--clients`` websocket clients (direct websocket, no polling first), each
  from its own source address 127.0.2.1, 127.0.2.2, ... (254 per /24: 127.0.3.x next ...),
  connect namespace ``/``, then each runs a closed loop ``42["echo",<payload>]`` -> wait
  for the server's ``echo`` emit -> send again.
* ``broadcast`` -- ``--clients`` receivers join room ``--room``; one extra sender client
  emits ``bcast`` ``--rate`` times a second carrying a CLOCK_MONOTONIC timestamp; every
  receiver records now - ts.
* ``idle`` -- open ``--clients`` websocket clients, print ``{"phase": "connected",
  "connected": n, "connect_seconds": t, ...}``, keep them open (answering Engine.IO
  pings) until stdin closes (only watched when stdin is a pipe, socket or tty), SIGTERM /
  SIGINT, or ``--hold`` seconds pass; then print a ``{"phase": "done", ...}`` line.

Every load phase is preceded by ``--warmup`` seconds of unrecorded load (echo, broadcast,
handshake). ``--procs P`` forks P load processes that split the clients (or the
handshake concurrency) and merges their results. Every result carries the load
generator's own CPU time over the measured window and its CPU share (cpu / wall); with
``--server-pid`` (repeatable; children are included) also the server's.
All traffic is loopback only: a non-127.0.0.0/8 URL is refused. ``--cpus`` pins the
load generator (sched_setaffinity). Exit status: 0, or 2 when nothing succeeded (no
handshake / no client connected).
"""
import argparse
import asyncio
import base64
import gc
import hashlib
import json
import multiprocessing
import os
import random
import resource
import signal
import socket
import stat
import sys
import time
import traceback
from array import array
from urllib.parse import urlsplit

now = time.monotonic  # CLOCK_MONOTONIC: one clock for all processes on the machine

IP_BIND_ADDRESS_NO_PORT = getattr(socket, 'IP_BIND_ADDRESS_NO_PORT', 24)  # Linux
WS_GUID = b'258EAFA5-E914-47DA-95CA-C5AB0DC85B11'
SCENARIOS = ('handshake', 'echo', 'broadcast', 'idle')
DEFAULT_CLIENTS = {'echo': 100, 'broadcast': 200, 'idle': 5000}
MAX_CLIENT_SOURCES = 253 * 254  # 127.0.2.1 .. 127.0.254.254


# --------------------------------------------------------------------------- helpers

def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return soft


def cpu_seconds():
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def handshake_source(i, k):
    return '127.0.1.%d' % (1 + i % k)


def client_source(i):
    """Source address of websocket client i: 127.0.2.1 .. 127.0.2.254, 127.0.3.1, ..."""
    return '127.0.%d.%d' % (2 + i // 254, 1 + i % 254)


def percentiles(samples, prefix=''):
    """p50/p90/p99/max/mean in milliseconds of a sequence of seconds."""
    keys = ('p50', 'p90', 'p99', 'max', 'mean')
    if not samples:
        return {prefix + k + '_ms': None for k in keys}
    s = sorted(samples)
    n = len(s)

    def q(p):
        return s[min(n - 1, int(p * n))]

    vals = (q(0.50), q(0.90), q(0.99), s[-1], sum(s) / n)
    return {prefix + k + '_ms': round(v * 1000.0, 3) for k, v in zip(keys, vals)}


def ws_frame(payload, opcode=0x1):
    """One client->server websocket frame: FIN, opcode, masked with a random key."""
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        head = bytes((0x80 | opcode, 0xFE)) + n.to_bytes(2, 'big')
    else:
        head = bytes((0x80 | opcode, 0xFF)) + n.to_bytes(8, 'big')
    key = random.getrandbits(32).to_bytes(4, 'big')
    if not n:
        return head + key
    k = (key * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, 'big') ^ int.from_bytes(k, 'big')).to_bytes(n, 'big')
    return head + key + masked


class ProtocolError(Exception):
    pass


class ServerCPU:
    """CPU seconds (user+sys) of the given server pids and their children (psutil)."""

    def __init__(self, pids):
        import psutil
        self.procs = []
        for pid in pids:
            try:
                p = psutil.Process(pid)
            except psutil.Error:
                continue
            self.procs.append(p)
            try:
                self.procs.extend(p.children(recursive=True))
            except psutil.Error:
                pass
        self.start = {}

    def _sample(self):
        import psutil
        out = {}
        for p in self.procs:
            try:
                t = p.cpu_times()
                out[p.pid] = t.user + t.system
            except psutil.Error:
                pass
        return out

    def begin(self):
        self.start = self._sample()

    def end(self):
        stop = self._sample()
        return sum(stop[pid] - self.start[pid] for pid in stop if pid in self.start)


class Window:
    """Snapshots wall/CPU (ours, and the server's if asked) at window start and end."""

    def __init__(self, server_pids=None):
        self.server = ServerCPU(server_pids) if server_pids else None
        self.t0 = self.t1 = None
        self.c0 = self.c1 = 0.0
        self.server_cpu = None

    def begin(self):
        if self.t0 is None:
            if self.server:
                self.server.begin()
            self.c0 = cpu_seconds()
            self.t0 = now()

    def end(self):
        if self.t0 is not None and self.t1 is None:
            self.t1 = now()
            self.c1 = cpu_seconds()
            if self.server:
                self.server_cpu = self.server.end()

    def schedule(self, loop, start, stop):
        loop.call_at(start, self.begin)
        loop.call_at(stop, self.end)

    def report(self):
        wall = (self.t1 - self.t0) if self.t1 is not None else 0.0
        return {'wall': wall, 'cpu': self.c1 - self.c0, 'server_cpu': self.server_cpu,
                't0': self.t0, 't1': self.t1}


class Run:
    """Shared state and counters of one load process."""

    def __init__(self, args, loop):
        self.args = args
        self.loop = loop
        self.host, self.port, self.path = args.target
        self.errors = {}
        self.lat = array('d')          # recorded latencies, seconds
        self.conn_lat = array('d')     # websocket connect latencies, seconds
        self.count = 0                 # recorded operations (echo msgs, handshakes)
        self.rec_start = float('inf')  # recording window (monotonic)
        self.rec_end = float('inf')
        self.pings = 0
        self.delivered = 0
        self.delivered_early = 0       # broadcast deliveries of warm-up messages
        self.finished = 0
        self.done = None               # future set when all clients are finished
        self.expect_done = 0
        self.last_seq = -1
        self.sent = 0
        self.sent_recorded = 0
        self.pids = {}

    def error(self, kind):
        self.errors[kind] = self.errors.get(kind, 0) + 1

    def client_finished(self):
        self.finished += 1
        if self.finished >= self.expect_done and self.done is not None and not self.done.done():
            self.done.set_result(None)


# --------------------------------------------------------------------------- websocket client

class WsClient(asyncio.Protocol):
    """A Socket.IO v5 / Engine.IO v4 client over a raw websocket (namespace '/')."""

    def __init__(self, run, index):
        self.run = run
        self.index = index
        self.transport = None
        self.upgraded = False
        self.closing = False
        self.buf = b''
        self.frag = None
        self.key = base64.b64encode(os.urandom(16))
        self.connected = run.loop.create_future()
        self.ack = None
        self.ack_id = 0

    # -- transport events
    def connection_made(self, transport):
        self.transport = transport
        r = self.run
        transport.write(
            b'GET %s?EIO=4&transport=websocket HTTP/1.1\r\nHost: %s:%d\r\n'
            b'Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\n'
            b'Sec-WebSocket-Version: 13\r\n\r\n'
            % (r.path.encode(), r.host.encode(), r.port, self.key))

    def connection_lost(self, exc):
        if not self.closing:
            self.closing = True
            self.run.error('disconnect')
            self._fail(ProtocolError('connection lost' if self.upgraded
                                     else 'connection lost before the upgrade'))
            self.lost()

    def lost(self):
        """An established client went away unexpectedly (scenario hook)."""

    def _fail(self, exc):
        if not self.connected.done():
            self.connected.set_exception(exc)
            self.connected.exception()  # mark retrieved
        if self.ack is not None and not self.ack.done():
            self.ack.set_exception(exc)
            self.ack.exception()

    def protocol_error(self, what):
        if not self.closing:
            self.run.error('protocol')
            self.closing = True
            self._fail(ProtocolError(what))
            self.lost()
            if self.transport is not None:
                self.transport.abort()

    def close(self):
        if not self.closing:
            self.closing = True
            self._fail(ProtocolError('closed'))
            if self.transport is not None:
                self.transport.close()

    def send_text(self, payload):
        self.transport.write(ws_frame(payload))

    def data_received(self, data):
        if not self.upgraded:
            data = self.buf + data
            end = data.find(b'\r\n\r\n')
            if end < 0:
                self.buf = data
                if len(data) > 16384:
                    self.protocol_error('oversized upgrade response')
                return
            head = data[:end]
            data = data[end + 4:]
            self.buf = b''
            accept = base64.b64encode(hashlib.sha1(self.key + WS_GUID).digest())
            if not head.startswith(b'HTTP/1.1 101') or accept not in head:
                self.protocol_error('bad upgrade: %r' % head[:80])
                return
            self.upgraded = True
            if not data:
                return
        elif self.buf:
            data = self.buf + data
            self.buf = b''
        pos = 0
        n = len(data)
        while n - pos >= 2:
            b0 = data[pos]
            ln = data[pos + 1]
            if ln & 0x80:
                self.protocol_error('masked server frame')
                return
            if ln < 126:
                hdr = 2
            elif ln == 126:
                if n - pos < 4:
                    break
                ln = int.from_bytes(data[pos + 2:pos + 4], 'big')
                hdr = 4
            else:
                if n - pos < 10:
                    break
                ln = int.from_bytes(data[pos + 2:pos + 10], 'big')
                hdr = 10
            end = pos + hdr + ln
            if end > n:
                break
            payload = data[pos + hdr:end]
            pos = end
            op = b0 & 0x0F
            if op == 0x1 and b0 & 0x80:
                self.on_text(payload)
            elif op == 0x9:
                self.transport.write(ws_frame(payload, 0xA))
            elif op == 0x8:
                if not self.closing:
                    self.transport.write(ws_frame(payload[:2], 0x8))
                    self.protocol_error('server closed the websocket')
                return
            elif op == 0x1:            # first fragment of a text message
                self.frag = [payload]
            elif op == 0x0 and self.frag is not None:
                self.frag.append(payload)
                if b0 & 0x80:
                    text, self.frag = b''.join(self.frag), None
                    self.on_text(text)
            # 0xA pong and anything else: ignore
            if self.closing:
                return
        if pos < n:
            self.buf = data[pos:]

    # -- Engine.IO / Socket.IO packets
    def on_text(self, p):
        c = p[:1]
        if c == b'4':
            k = p[1:2]
            if k == b'2':
                self.on_event(p)
            elif k == b'3':
                self.on_ack(p)
            elif k == b'0':
                if not self.connected.done():
                    self.connected.set_result(None)
            else:                       # 41 disconnect, 44 connect error
                self.protocol_error('socket.io packet %r' % p[:60])
        elif c == b'2':                 # Engine.IO ping -> pong
            self.transport.write(ws_frame(b'3' + p[1:]))
            self.run.pings += 1
        elif c == b'0':                 # Engine.IO open -> connect namespace '/'
            self.transport.write(ws_frame(b'40'))
        elif c == b'1':
            self.protocol_error('engine.io close')
        # 6 noop, 3 pong: ignore

    def on_event(self, p):
        pass

    def on_ack(self, p):
        # 43<id>[...]
        if self.ack is not None and not self.ack.done():
            i = p.find(b'[')
            try:
                self.ack.set_result(json.loads(p[i:]))
            except ValueError:
                self.protocol_error('bad ack')

    async def call(self, event, *args):
        """Emit an event with an ack id and wait for the ack's arguments."""
        self.ack_id += 1
        self.ack = self.run.loop.create_future()
        self.send_text(b'42%d%s' % (self.ack_id, json.dumps([event, *args]).encode()))
        return await self.ack


class EchoClient(WsClient):
    def __init__(self, run, index):
        super().__init__(run, index)
        payload = json.dumps(['echo', 'x' * run.args.size], separators=(',', ':')).encode()
        self.frame = ws_frame(b'42' + payload)
        self.t_sent = 0.0
        self.running = False

    def start(self):
        self.running = True
        self.t_sent = now()
        self.transport.write(self.frame)

    def on_event(self, p):
        if not self.running or not p.startswith(b'42["echo"'):
            return
        t = now()
        run = self.run
        if t >= run.rec_start:
            if t >= run.rec_end:
                self.running = False
                run.client_finished()
                return
            run.lat.append(t - self.t_sent)
            run.count += 1
        self.t_sent = t
        self.transport.write(self.frame)

    def lost(self):
        if self.running:
            self.running = False
            self.run.client_finished()


class Receiver(WsClient):
    def __init__(self, run, index):
        super().__init__(run, index)
        self.waiting = False

    def on_event(self, p):
        if not p.startswith(b'42["bcast"'):
            return
        t = now()
        run = self.run
        try:
            d = json.loads(p[2:])[1]
            ts = d['ts']
            seq = d['seq']
        except (ValueError, KeyError, IndexError, TypeError):
            self.protocol_error('bad bcast')
            return
        if ts >= run.rec_start:
            run.lat.append(t - ts)
            run.delivered += 1
        else:
            run.delivered_early += 1
        if seq >= run.last_seq and self.waiting:
            self.waiting = False
            run.client_finished()

    def lost(self):
        if self.waiting:
            self.waiting = False
            self.run.client_finished()


# --------------------------------------------------------------------------- connecting

async def open_client(run, client):
    """TCP connect from the client's own source address, websocket upgrade, '40'."""
    loop = run.loop
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        sock.bind((client_source(client.index), 0))
        await loop.sock_connect(sock, (run.host, run.port))
        await loop.create_connection(lambda: client, sock=sock)
    except BaseException:
        sock.close()
        raise
    await client.connected


async def connect_all(run, cls, indices, deadline):
    """Connect clients with bounded concurrency; returns the connected ones."""
    args = run.args
    clients = []
    it = iter(indices)

    async def worker():
        for i in it:
            if now() >= deadline:
                run.error('connect_deadline')
                continue
            c = cls(run, i)
            t0 = now()
            try:
                async with asyncio.timeout(min(args.timeout, max(0.0, deadline - t0))):
                    await open_client(run, c)
                    if args.whoami:
                        pid = (await c.call('whoami'))[0]
                        run.pids[pid] = run.pids.get(pid, 0) + 1
                    if isinstance(c, Receiver):
                        await c.call('join', args.room)
            except (OSError, ProtocolError, TimeoutError) as exc:
                run.error('connect_timeout' if isinstance(exc, TimeoutError) else 'connect')
                c.closing = True
                if c.transport is not None:
                    c.transport.abort()
                continue
            run.conn_lat.append(now() - t0)
            clients.append(c)

    t0 = now()
    await asyncio.gather(*(worker() for _ in range(max(1, min(args.connect_concurrency,
                                                                len(indices))))))
    return clients, now() - t0


async def close_all(clients):
    for c in clients:
        c.close()
    await asyncio.sleep(0.1)


# --------------------------------------------------------------------------- coordination

def stdin_watchable():
    try:
        mode = os.fstat(0).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or os.isatty(0)


async def hold(seconds):
    """Wait until stdin closes (if it is a pipe/socket/tty), SIGTERM/SIGINT, or timeout."""
    loop = asyncio.get_running_loop()
    ev = asyncio.Event()
    reason = ['hold']
    watch = stdin_watchable()

    def on_stdin():
        try:
            data = os.read(0, 65536)
        except OSError:
            data = b''
        if not data:
            reason[0] = 'stdin'
            ev.set()

    def on_signal(name):
        reason[0] = name
        ev.set()

    if watch:
        loop.add_reader(0, on_stdin)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig.name)
    t0 = now()
    try:
        await asyncio.wait_for(ev.wait(), seconds)
    except TimeoutError:
        pass
    finally:
        if watch:
            loop.remove_reader(0)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    return reason[0], now() - t0


def connected_line(args, infos):
    line = {'phase': 'connected', 'scenario': args.scenario, 'clients': args.clients,
            'connected': sum(i['connected'] for i in infos),
            'connect_seconds': round(max(i['connect_seconds'] for i in infos), 3),
            'procs': len(infos)}
    errors = {}
    for i in infos:
        for k, v in i['errors'].items():
            errors[k] = errors.get(k, 0) + v
    line['errors'] = sum(errors.values())
    line['error_kinds'] = errors
    return line


class LocalCtl:
    """Coordinator when there is one load process: sync() returns the start time T0."""

    def __init__(self, args):
        self.args = args
        self.hold_info = None

    async def sync(self, info):
        if self.args.scenario == 'idle':
            print(json.dumps(connected_line(self.args, [info])), flush=True)
            self.hold_info = await hold(self.args.hold)
        return now() + 0.05


class ChildCtl:
    """Coordinator in a forked load process: report ready, wait for the parent's go."""

    def __init__(self, conn):
        self.conn = conn
        self.hold_info = None

    async def sync(self, info):
        self.conn.send(('ready', info))
        msg = await asyncio.get_running_loop().run_in_executor(None, self.conn.recv)
        return msg[1]


# --------------------------------------------------------------------------- scenarios

async def scenario_handshake(run, share, nshares, ctl):
    args = run.args
    loop = run.loop
    conc = args.concurrency // nshares + (1 if share < args.concurrency % nshares else 0)
    limit = args.max // nshares + (1 if share < args.max % nshares else 0)
    k = args.sources
    addr = (run.host, run.port)
    req = (b'GET %s?EIO=4&transport=polling HTTP/1.1\r\nHost: %s:%d\r\n'
           b'Connection: close\r\n\r\n' % (run.path.encode(), run.host.encode(), run.port))
    state = {'started': 0, 'rr': share}
    t0 = await ctl.sync({'connected': conc, 'connect_seconds': 0.0, 'errors': run.errors})
    await asyncio.sleep(max(0.0, t0 - now()))
    run.rec_start = t0 + args.warmup
    run.rec_end = run.rec_start + args.seconds
    win = Window(args.server_pid if share == 0 else None)
    win.schedule(loop, run.rec_start, run.rec_end)
    timeout = args.timeout

    async def one(src):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            try:
                sock.setsockopt(socket.SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            except OSError:
                pass
            sock.bind((src, 0))
            await loop.sock_connect(sock, addr)
            await loop.sock_sendall(sock, req)
            data = b''
            need = None
            while True:
                chunk = await loop.sock_recv(sock, 8192)
                if not chunk:
                    if need is None:
                        raise ProtocolError('eof before response')
                    break
                data += chunk
                if need is None:
                    end = data.find(b'\r\n\r\n')
                    if end < 0:
                        continue
                    head = data[:end].lower()
                    if not head.startswith(b'http/1.1 200'):
                        raise ProtocolError('status %r' % data[:40])
                    i = head.find(b'content-length:')
                    need = (end + 4 + int(head[i + 15:head.index(b'\r\n', i)])) if i >= 0 \
                        else float('inf')
                if len(data) >= need:
                    break
            end = data.find(b'\r\n\r\n')
            body = data[end + 4:]
            if b'transfer-encoding: chunked' in data[:end].lower():  # uvicorn: no length
                body = body.partition(b'\r\n')[2]
            if not body.startswith(b'0{') or b'"sid"' not in body:
                raise ProtocolError('not an open packet: %r' % body[:40])
        finally:
            sock.close()

    async def worker():
        while True:
            t = now()
            if t >= run.rec_end or state['started'] >= limit:
                return
            state['started'] += 1
            src = handshake_source(state['rr'], k)
            state['rr'] += 1
            try:
                async with asyncio.timeout(timeout):
                    await one(src)
            except TimeoutError:
                run.error('timeout')
                continue
            except (OSError, ProtocolError, ValueError) as exc:
                run.error('connect' if isinstance(exc, OSError) else 'protocol')
                continue
            t1 = now()
            if run.rec_start <= t1 < run.rec_end:
                run.lat.append(t1 - t)
                run.count += 1

    await asyncio.gather(*(worker() for _ in range(conc)))
    win.begin()   # no-ops unless the run ended before the window opened / closed
    win.end()
    return {'attempted': state['started'], 'window': win.report()}


async def scenario_echo(run, share, nshares, ctl):
    args = run.args
    loop = run.loop
    indices = range(share, args.clients, nshares)
    t_setup = now()
    clients, connect_seconds = await connect_all(run, EchoClient, indices,
                                                 t_setup + args.setup_timeout)
    gc.collect()
    gc.freeze()
    cpu_setup = cpu_seconds()
    t0 = await ctl.sync({'connected': len(clients), 'connect_seconds': connect_seconds,
                         'errors': dict(run.errors)})
    run.rec_start = t0 + args.warmup
    run.rec_end = run.rec_start + args.seconds
    win = Window(args.server_pid if share == 0 else None)
    win.schedule(loop, run.rec_start, run.rec_end)
    run.done = loop.create_future()
    live = [c for c in clients if not c.closing]
    run.expect_done = len(live)
    await asyncio.sleep(max(0.0, t0 - now()))
    for c in live:
        c.start()
    if not live:
        run.done.set_result(None)
    try:
        async with asyncio.timeout_at(run.rec_end + args.timeout):
            await run.done
    except TimeoutError:
        pass
    win.begin()
    win.end()
    stalled = sum(1 for c in live if c.running)
    await close_all(clients)
    return {'connected': len(clients), 'connect_seconds': connect_seconds,
            'stalled': stalled, 'window': win.report(), 'cpu_setup': cpu_setup}


async def scenario_broadcast(run, share, nshares, ctl):
    args = run.args
    loop = run.loop
    indices = range(share, args.clients, nshares)
    t_setup = now()
    receivers, connect_seconds = await connect_all(run, Receiver, indices,
                                                   t_setup + args.setup_timeout)
    sender = None
    if share == 0:
        senders, _ = await connect_all(run, WsClient, [args.clients], t_setup + args.setup_timeout)
        sender = senders[0] if senders else None
        if sender is None:
            run.error('sender')
    gc.collect()
    gc.freeze()
    t0 = await ctl.sync({'connected': len(receivers), 'connect_seconds': connect_seconds,
                         'errors': dict(run.errors)})
    n_msgs = max(1, int(round((args.warmup + args.seconds) * args.rate)))
    run.last_seq = n_msgs - 1
    run.rec_start = t0 + args.warmup
    run.rec_end = run.rec_start + args.seconds
    win = Window(args.server_pid if share == 0 else None)
    win.schedule(loop, run.rec_start, run.rec_end)
    run.done = loop.create_future()
    live = [c for c in receivers if not c.closing]
    for c in live:
        c.waiting = True
    run.expect_done = len(live)
    if not live:
        run.done.set_result(None)
    await asyncio.sleep(max(0.0, t0 - now()))

    async def send_loop():
        room = json.dumps(args.room)
        for k in range(n_msgs):
            delay = t0 + k / args.rate - now()
            if delay > 0:
                await asyncio.sleep(delay)
            if sender.closing:
                return
            ts = now()
            sender.send_text(b'42["bcast",{"room":%s,"ts":%r,"seq":%d}]'
                             % (room.encode(), ts, k))
            run.sent += 1
            if ts >= run.rec_start:
                run.sent_recorded += 1

    if sender is not None:
        await send_loop()
    try:
        async with asyncio.timeout_at(max(now(), t0 + n_msgs / args.rate) + args.drain):
            await run.done
    except TimeoutError:
        pass
    await asyncio.sleep(max(0.0, run.rec_end - now()))  # the window is --seconds long
    win.begin()
    win.end()
    waiting = sum(1 for c in live if c.waiting)
    await close_all(receivers + ([sender] if sender else []))
    return {'connected': len(receivers), 'connect_seconds': connect_seconds,
            'incomplete_receivers': waiting, 'window': win.report()}


async def scenario_idle(run, share, nshares, ctl):
    args = run.args
    indices = range(share, args.clients, nshares)
    t_setup = now()
    clients, connect_seconds = await connect_all(run, WsClient, indices,
                                                 t_setup + args.setup_timeout)
    gc.collect()
    gc.freeze()
    win = Window()
    errors_before = sum(run.errors.values())
    win.begin()
    await ctl.sync({'connected': len(clients), 'connect_seconds': connect_seconds,
                    'errors': dict(run.errors)})
    win.end()
    still_open = sum(1 for c in clients if not c.closing)
    await close_all(clients)
    return {'connected': len(clients), 'connect_seconds': connect_seconds,
            'still_open': still_open, 'errors_while_idle': sum(run.errors.values()) - errors_before,
            'window': win.report()}


SCENARIO_FUNCS = {'handshake': scenario_handshake, 'echo': scenario_echo,
                  'broadcast': scenario_broadcast, 'idle': scenario_idle}


async def run_share(args, share, nshares, ctl):
    """Run this process's share of the load; return a partial result to merge."""
    loop = asyncio.get_running_loop()
    run = Run(args, loop)
    cpu0, wall0 = cpu_seconds(), now()
    part = await SCENARIO_FUNCS[args.scenario](run, share, nshares, ctl)
    part.update(errors=run.errors, lat=run.lat, conn_lat=run.conn_lat, count=run.count,
                pings=run.pings, delivered=run.delivered, delivered_early=run.delivered_early,
                sent=run.sent, sent_recorded=run.sent_recorded, pids=run.pids,
                cpu_total=cpu_seconds() - cpu0, wall_total=now() - wall0,
                hold=getattr(ctl, 'hold_info', None))
    return part


# --------------------------------------------------------------------------- merging

def merge(args, parts, hold_info=None):
    sc = args.scenario
    errors = {}
    for p in parts:
        for k, v in p['errors'].items():
            errors[k] = errors.get(k, 0) + v
    wins = [p['window'] for p in parts]
    t0s = [w['t0'] for w in wins if w['t0'] is not None]
    t1s = [w['t1'] for w in wins if w['t1'] is not None]
    wall = (max(t1s) - min(t0s)) if t0s and t1s else 0.0
    cpu = sum(w['cpu'] for w in wins)
    shares = [w['cpu'] / w['wall'] for w in wins if w['wall'] > 0.01]
    lat = array('d')
    conn_lat = array('d')
    for p in parts:
        lat.extend(p['lat'])
        conn_lat.extend(p['conn_lat'])

    def total(key):
        return sum(p.get(key, 0) for p in parts)

    out = {'scenario': sc, 'url': args.url, 'procs': len(parts),
           'loadgen_cpus': sorted(os.sched_getaffinity(0))}
    if sc == 'handshake':
        out.update(concurrency=args.concurrency, sources=args.sources,
                   attempted=total('attempted'), handshakes=total('count'),
                   handshakes_per_s=round(total('count') / wall, 1) if wall else 0.0)
        out.update(percentiles(lat))
    elif sc == 'echo':
        out.update(clients=args.clients, connected=total('connected'),
                   connect_seconds=round(max(p['connect_seconds'] for p in parts), 3),
                   payload_bytes=args.size, msgs=total('count'),
                   msgs_per_s=round(total('count') / wall, 1) if wall else 0.0,
                   stalled=total('stalled'))
        out.update(percentiles(lat))
        out.update(percentiles(conn_lat, 'connect_'))
    elif sc == 'broadcast':
        joined = total('connected')
        expected = total('sent_recorded') * joined
        delivered = total('delivered')
        out.update(clients=args.clients, joined=joined,
                   connect_seconds=round(max(p['connect_seconds'] for p in parts), 3),
                   rate=args.rate, sent=total('sent'), sent_recorded=total('sent_recorded'),
                   expected=expected, delivered=delivered,
                   delivery_ratio=round(delivered / expected, 6) if expected else None,
                   deliveries_per_s=round(delivered / wall, 1) if wall else 0.0,
                   incomplete_receivers=total('incomplete_receivers'))
        out.update(percentiles(lat))
        out.update(percentiles(conn_lat, 'connect_'))
    elif sc == 'idle':
        out.update(phase='done', clients=args.clients, connected=total('connected'),
                   connect_seconds=round(max(p['connect_seconds'] for p in parts), 3),
                   still_open=total('still_open'), errors_while_idle=total('errors_while_idle'),
                   pings_answered=total('pings'))
        hi = hold_info or parts[0].get('hold')
        if hi:
            out.update(hold_ended_by=hi[0], held_seconds=round(hi[1], 3))
        out.update(percentiles(conn_lat, 'connect_'))
    pids = {}
    for p in parts:
        for k, v in p['pids'].items():
            pids[str(k)] = pids.get(str(k), 0) + v
    if pids:
        out['server_pids'] = pids
    out.update(seconds=round(wall, 3), errors=sum(errors.values()), error_kinds=errors,
               loadgen_cpu_seconds=round(cpu, 3),
               loadgen_cpu_share=round(cpu / wall, 3) if wall > 0.01 else None,
               loadgen_cpu_share_max_proc=round(max(shares), 3) if shares else None,
               loadgen_cpu_seconds_total=round(sum(p['cpu_total'] for p in parts), 3),
               loadgen_wall_seconds_total=round(max(p['wall_total'] for p in parts), 3))
    server_cpu = [w['server_cpu'] for w in wins if w['server_cpu'] is not None]
    if server_cpu:
        w0 = wins[0]
        out.update(server_cpu_seconds=round(server_cpu[0], 3),
                   server_cpu_share=(round(server_cpu[0] / w0['wall'], 3)
                                     if w0['wall'] > 0.01 else None))
    return out


# --------------------------------------------------------------------------- processes

def _child(args, share, nshares, conn):
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        part = asyncio.run(run_share(args, share, nshares, ChildCtl(conn)))
        conn.send(('result', part))
    except BaseException:
        try:
            conn.send(('error', traceback.format_exc()))
        except OSError:
            pass
    finally:
        conn.close()


def _recv(conns, deadline, kind):
    msgs = []
    for c in conns:
        if not c.poll(max(0.0, deadline - now())):
            raise RuntimeError('a load process did not report %s in time' % kind)
        msg = c.recv()
        if msg[0] == 'error':
            raise RuntimeError('a load process failed:\n' + msg[1])
        msgs.append(msg[1])
    return msgs


def run_forked(args):
    ctx = multiprocessing.get_context('fork')
    conns, procs = [], []
    try:
        for j in range(args.procs):
            parent_end, child_end = ctx.Pipe()
            p = ctx.Process(target=_child, args=(args, j, args.procs, child_end), daemon=True)
            p.start()
            child_end.close()
            conns.append(parent_end)
            procs.append(p)
        infos = _recv(conns, now() + args.setup_timeout + args.timeout + 30, 'ready')
        hold_info = None
        if args.scenario == 'idle':
            print(json.dumps(connected_line(args, infos)), flush=True)
            hold_info = asyncio.run(hold(args.hold))
        t0 = now() + 0.05
        for c in conns:
            c.send(('go', t0))
        budget = args.warmup + args.seconds + args.timeout + args.drain + 30
        if args.scenario == 'broadcast':
            budget += (args.warmup + args.seconds)  # the sender may run late
        parts = _recv(conns, now() + budget, 'results')
        return merge(args, parts, hold_info)
    finally:
        for p in procs:
            p.join(5)
            if p.is_alive():
                p.terminate()
                p.join(5)


# --------------------------------------------------------------------------- CLI

def parse_target(url, path):
    u = urlsplit(url)
    if u.scheme != 'http' or not u.hostname:
        raise SystemExit('--url must look like http://127.0.0.1:PORT')
    try:
        addr = socket.inet_aton(u.hostname)
    except OSError:
        raise SystemExit('--url host must be a numeric 127.x.x.x address (loopback only)')
    if addr[0] != 127:
        raise SystemExit('--url must be on loopback (127.0.0.0/8): %s' % u.hostname)
    if not path.endswith('/'):
        path += '/'
    return u.hostname, u.port or 80, path


def parse_args(argv=None):
    ap = argparse.ArgumentParser(prog='python -m bench.loadgen', description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('scenario', choices=SCENARIOS)
    ap.add_argument('--url', default='http://127.0.0.1:5077', help='server (loopback only)')
    ap.add_argument('--path', default='/socket.io/', help='Engine.IO path (default /socket.io/)')
    ap.add_argument('--seconds', type=float, default=5.0, help='measured seconds (default 5)')
    ap.add_argument('--warmup', type=float, default=1.0,
                    help='unrecorded load before the window (default 1; not for idle)')
    ap.add_argument('--procs', type=int, default=1, help='load processes (default 1)')
    ap.add_argument('--timeout', type=float, default=10.0,
                    help='per connect/handshake timeout, and grace after the window (default 10)')
    ap.add_argument('--cpus', default=None,
                    help='pin the load generator to these CPUs, e.g. "1" (sched_setaffinity)')
    ap.add_argument('--server-pid', type=int, action='append', default=[],
                    help='also report this process\'s (and its children\'s) CPU; repeatable')
    g = ap.add_argument_group('handshake')
    g.add_argument('--concurrency', type=int, default=50, help='handshakes in flight (default 50)')
    g.add_argument('--sources', type=int, default=16,
                   help='source addresses 127.0.1.1..K to rotate over (default 16, max 254)')
    g.add_argument('--max', type=int, default=1_000_000, help='most handshakes (default 1e6)')
    g = ap.add_argument_group('echo / broadcast / idle')
    g.add_argument('--clients', type=int, default=None,
                   help='websocket clients (default: echo 100, broadcast 200, idle 5000)')
    g.add_argument('--connect-concurrency', type=int, default=200,
                   help='websocket connects in flight while connecting (default 200)')
    g.add_argument('--setup-timeout', type=float, default=300.0,
                   help='bound on the whole connect phase (default 300)')
    g.add_argument('--whoami', action='store_true',
                   help='ask every client\'s server pid after connecting (reports server_pids)')
    g.add_argument('--size', type=int, default=16, help='echo payload characters (default 16)')
    g.add_argument('--room', default='r', help='broadcast room (default r)')
    g.add_argument('--rate', type=float, default=10.0, help='broadcasts per second (default 10)')
    g.add_argument('--drain', type=float, default=3.0,
                   help='broadcast: wait at most this long for the last deliveries (default 3)')
    g.add_argument('--hold', type=float, default=600.0,
                   help='idle: hold the clients at most this long (default 600)')
    args = ap.parse_args(argv)
    args.target = parse_target(args.url, args.path)
    if args.clients is None:
        args.clients = DEFAULT_CLIENTS.get(args.scenario, 0)
    n_ws = args.clients + (1 if args.scenario == 'broadcast' else 0)
    if n_ws > MAX_CLIENT_SOURCES:
        ap.error('at most %d clients' % (MAX_CLIENT_SOURCES - 1))
    if not 1 <= args.sources <= 254:
        ap.error('--sources must be 1..254')
    if args.procs < 1 or args.seconds <= 0 or args.warmup < 0 or args.rate <= 0:
        ap.error('--procs >= 1, --seconds > 0, --warmup >= 0, --rate > 0')
    if args.scenario == 'idle':
        args.warmup = 0.0
    return args


def main(argv=None):
    args = parse_args(argv)
    raise_nofile()
    if args.cpus:
        os.sched_setaffinity(0, {int(c) for c in args.cpus.split(',')})
    if args.procs == 1:
        ctl = LocalCtl(args)
        part = asyncio.run(run_share(args, 0, 1, ctl))
        result = merge(args, [part], ctl.hold_info)
    else:
        result = run_forked(args)
    print(json.dumps(result), flush=True)
    # 2 = nothing succeeded (server down?); the JSON line says what failed
    ok = result.get({'handshake': 'handshakes', 'broadcast': 'joined'}.get(args.scenario,
                                                                         'connected'))
    return 0 if ok else 2


if __name__ == '__main__':
    sys.exit(main())
