"""The forwarder: the process that relays requests for other hosts' sessions.

The master forks it (beside the workers, never running the user's app) when several hosts
share sessions, and calls :func:`serve`. The master hands it every client whose request
names another host's sid, as it hands a worker its own; the forwarder relays each request
to that host (:mod:`cluster.hosts.forwarding`) and hands back to the master whatever
comes next on the connection for this host. It keeps the directory of hosts up
(:mod:`cluster.hosts.directory`: renewing this host's lease, reading the others') and tells
the master what it knows in HOSTS messages, with its counts.

Its life: READY once the directory was read; a HEARTBEAT (open client connections) and a
HOSTS every heartbeat interval, and a HOSTS whenever the directory changes; on DRAIN it
gives this host's entry up, finishes the open connections within the graceful timeout and
exits 0; when the channel ends (the master is gone) it gives the entry up (briefly) and
exits at once: no orphan.
"""
from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
from typing import NoReturn

from cluster.protocol.frames import Heartbeat, Kind

from .counts import hosts_message
from .directory import TIMEOUT, RedisDirectory, StaticDirectory
from .forwarder_config import ForwarderConfig
from .forwarding import ClientRelay, Forwarding
from .link import MasterLink

log = logging.getLogger("sticky_cluster.hosts")

GONE_GRACE = 1.0
"""Seconds to give this host's entry up once the master is gone, before exiting."""


def serve(channel: socket.socket, config: ForwarderConfig) -> NoReturn:
    """Run the forwarder in this (forked) process until drained or orphaned; exit.

    The caller has set the child's signals as a worker's (the master drives it through
    its channel) and closed the master's files.

    :param channel: the forwarder's end of its channel socketpair with the master.
    :param config: its settings.
    """
    code = 0
    try:
        with asyncio.Runner(loop_factory=_new_loop) as runner:
            code = runner.run(Forwarder(channel, config).run())
    except BaseException:  # noqa: BLE001 - never return to the master's code in a child
        log.critical("the forwarder failed", exc_info=True)
        code = 1
    finally:
        sys.stdout.flush()
        logging.shutdown()
        os._exit(code)


def _new_loop() -> asyncio.AbstractEventLoop:
    """uvloop's event loop when installed (the ``asyncio`` extra), else asyncio's: uvloop
    took the forwarder's CPU per forwarded polling request from 162–175 to 146–164 µs
    (3 alternating runs of 8,000 requests on the development machine)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class Forwarder:
    """The forwarder's parts on one event loop; :meth:`run` returns the exit status."""

    def __init__(self, channel: socket.socket, config: ForwarderConfig) -> None:
        self._channel = channel
        self._config = config
        self._directory: RedisDirectory | StaticDirectory = (
            RedisDirectory(config.adapter, config.channel, config.host_id, config.advertise)
            if config.adapter else StaticDirectory(config.peers))
        self._relays: set[asyncio.Task] = set()
        self._stop: asyncio.Future[int] | None = None
        self._link: MasterLink | None = None
        self._forwarding: Forwarding | None = None
        self._ready = False

    async def run(self) -> int:
        """Serve until DRAIN (then 0) or the master is gone (then 0 at once)."""
        loop = asyncio.get_running_loop()
        self._stop = loop.create_future()
        self._link = link = MasterLink(self._channel, self._take, self._drain, self._gone)
        self._forwarding = Forwarding(self._config, lambda: self._directory.hosts,
                                      self._hand_back)
        upkeep = asyncio.ensure_future(self._directory.run(self._send_hosts))
        await self._first_reading()
        link.start()
        link.send(Kind.READY)
        self._ready = True
        self._send_hosts()
        beats = asyncio.ensure_future(self._heartbeats())
        try:
            return await self._stop
        finally:
            beats.cancel()
            upkeep.cancel()
            for relay in self._relays:
                relay.cancel()
            await asyncio.gather(beats, upkeep, *self._relays, return_exceptions=True)
            if self._forwarding is not None:
                self._forwarding.sweep(everything=True)
            await self._directory.close()

    async def _first_reading(self) -> None:
        """Wait (a little) for the directory's first reading, so that the first requests
        find their hosts."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + TIMEOUT
        while not self._directory.read_once and loop.time() < deadline:
            await asyncio.sleep(0.01)

    def _take(self, sock: socket.socket, address: tuple[str, int], preface: bytes) -> None:
        assert self._forwarding is not None
        if len(self._relays) >= self._config.connection_limit:
            self._forwarding.refuse_full(sock, address)
            return
        relay = asyncio.ensure_future(ClientRelay(self._forwarding, sock, address, preface).run())
        self._relays.add(relay)
        relay.add_done_callback(self._relays.discard)

    def _hand_back(self, sock: socket.socket, address: tuple[str, int], data: bytes) -> None:
        assert self._link is not None
        self._link.hand_back(sock, address, data)

    def _send_hosts(self) -> None:
        if self._ready and self._link is not None and self._forwarding is not None:
            self._link.send(Kind.HOSTS, hosts_message(self._directory.hosts,
                                                      self._forwarding.counts))

    async def _heartbeats(self) -> None:
        assert self._link is not None and self._forwarding is not None
        while True:
            open_now = len(self._relays)
            self._link.send(Kind.HEARTBEAT, Heartbeat(open_now, open_now).encode())
            self._send_hosts()
            self._forwarding.flush_logs()
            self._forwarding.sweep()
            await asyncio.sleep(self._config.heartbeat_interval)

    def _drain(self) -> None:
        asyncio.ensure_future(self._drained())

    async def _drained(self) -> None:
        """Leave the directory, finish the open connections (within the graceful timeout)."""
        log.info("forwarder %d draining: %d connections open", os.getpid(), len(self._relays))
        assert self._forwarding is not None
        self._forwarding.drain()
        await self._directory.give_up()
        if self._relays:
            await asyncio.wait(set(self._relays), timeout=self._config.graceful_timeout)
        self._finish(0)

    def _gone(self) -> None:
        asyncio.ensure_future(self._leave())

    async def _leave(self) -> None:
        """The master is gone: give the entry up (briefly) and exit."""
        log.info("master channel closed; forwarder %d exits", os.getpid())
        try:
            await asyncio.wait_for(self._directory.give_up(), GONE_GRACE)
        except asyncio.TimeoutError:
            pass
        self._finish(0)

    def _finish(self, code: int) -> None:
        if self._stop is not None and not self._stop.done():
            self._stop.set_result(code)

