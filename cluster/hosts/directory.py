"""The directory of hosts: host id -> the address other masters reach it at.

With a Redis-family adapter each master's entry is a key, ``{channel}:hosts:{id}`` =
``HOST:PORT`` (:func:`~cluster.hosts.addresses.key_of`), set with a lease of
:data:`~cluster.hosts.addresses.LEASE_MS`: claimed by the master at start
(:mod:`cluster.hosts.lease`), renewed by its forwarder every
:data:`~cluster.hosts.addresses.RENEW_INTERVAL` seconds (:class:`RedisDirectory`) and
given up when the host stops, so a host killed ``-9`` is gone from the directory a lease
after. With ``--peers`` the directory is fixed (:class:`StaticDirectory`).

The broker client is imported inside the functions that use it (redis or valkey, by the
URL). The master does not import this module: it parses with :mod:`cluster.hosts.addresses`
(``parse_peers`` and ``parse_advertise`` are re-exported here for the balancer command) and
claims with :mod:`cluster.hosts.lease`.
"""
from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
from typing import Any, Callable

from cluster.protocol import adapters
from cluster.protocol.bursts import BurstLog
from cluster.setup.broker_check import redis_client

from .addresses import (LEASE_MS, REFRESH_INTERVAL, RENEW_INTERVAL, Address, entries,
                        format_address, key_of, key_pattern, parse_advertise, parse_peers)

__all__ = ["Address", "parse_peers", "parse_advertise", "read", "RedisDirectory",
           "StaticDirectory", "TIMEOUT"]

log = logging.getLogger("sticky_cluster.hosts")

TIMEOUT = 3.0
"""Seconds to connect to the broker and for each of its answers."""

SCAN_COUNT = 500
"""Keys asked for per ``SCAN`` step."""

RENEW_SCRIPT = """
local held = redis.call('get', KEYS[1])
if held == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
if not held then redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 2 end
return 0
"""
"""Renew our entry (1); take it again if it lapsed (2); 0 when another master holds it."""

RELEASE_SCRIPT = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""
"""Delete our entry, only if it is still ours (1), else 0."""


def client_module(url: str, asynchronous: bool) -> Any:
    """The broker client package for ``url`` (``redis`` or ``valkey``; their asyncio twin
    when ``asynchronous``)."""
    name = adapters.scheme_of(url).module
    return importlib.import_module(f"{name}.asyncio" if asynchronous else name)


def read(url: str, channel: str, timeout: float = TIMEOUT) -> dict[int, Address]:
    """The directory now, read from the broker at ``url`` (synchronous: for a command).

    Raises what the client raises when the broker cannot be reached.
    """
    client = redis_client(client_module(url, False), url, channel, timeout)
    try:
        keys = sorted({key.decode() if isinstance(key, bytes) else key
                       for key in client.scan_iter(match=key_pattern(channel), count=SCAN_COUNT)})
        values = client.mget(keys) if keys else []
    finally:
        client.close()
    return entries(channel, dict(zip(keys, map(_text, values))))


def _text(value: bytes | str | None) -> str | None:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value


class StaticDirectory:
    """The directory of ``--peers``: fixed for the life of the process.

    :param peers: {host id: address}.
    """

    read_once = True
    """The hosts are known from the start."""

    def __init__(self, peers: dict[int, Address]) -> None:
        self.hosts: dict[int, Address] = dict(peers)

    async def run(self, on_change: Callable[[], None]) -> None:
        """Nothing to keep up: returns at once (the hosts never change)."""

    async def give_up(self) -> None:
        """Nothing to give up."""

    async def close(self) -> None:
        """Nothing to close."""


class RedisDirectory:
    """This host's leased entry and everyone's, kept up from the forwarder's loop.

    :meth:`run` renews our entry every :data:`RENEW_INTERVAL` seconds (a lapsed lease is
    taken again; one held by another master is logged, once per burst) and reads the
    whole directory every :data:`REFRESH_INTERVAL` seconds into :attr:`hosts`, calling
    ``on_change`` when it differs. While the broker cannot be reached the last directory
    read is kept (logged once per burst). :meth:`give_up` deletes our entry if still ours.

    :param url: the Redis-family adapter URL.
    :param channel: the cluster's channel name.
    :param host_id: this host's id.
    :param address: this host's advertised address (the value of its entry).
    """

    def __init__(self, url: str, channel: str, host_id: int, address: Address) -> None:
        self.hosts: dict[int, Address] = {}
        self.read_once = False
        """The first reading was tried (it may have failed)."""
        self._url = url
        self._channel = channel
        self._key = key_of(channel, host_id)
        self._value = format_address(address)
        self._client = redis_client(client_module(url, True), url, channel, TIMEOUT)
        self._renewing = True
        self._unreachable = BurstLog(log, logging.WARNING,
                                     "the directory of hosts cannot be read or renewed: %s")
        self._lost = BurstLog(log, logging.ERROR,
                              f"host id {host_id}'s entry is held by %s (another master): two "
                              "hosts share an id; give each its own --host-id")
        self._lapsed = BurstLog(log, logging.WARNING,
                                f"host id {host_id}'s lease had lapsed (the broker was out of "
                                "reach for a while): taken again")

    async def run(self, on_change: Callable[[], None]) -> None:
        """Renew and refresh until cancelled."""
        loop = asyncio.get_running_loop()
        next_renewal = loop.time()
        while True:
            try:
                if self._renewing and loop.time() >= next_renewal:
                    next_renewal = loop.time() + RENEW_INTERVAL
                    await self._renew()
                hosts = await self._refresh()
            except Exception as exc:  # noqa: BLE001 - the broker's errors vary; keep going
                self._unreachable.note(adapters.scrub(" ".join(str(exc).split())
                                                      or type(exc).__name__, self._url))
            else:
                if hosts != self.hosts:
                    self.hosts = hosts
                    on_change()
            self.read_once = True
            await asyncio.sleep(REFRESH_INTERVAL)

    async def _renew(self) -> None:
        result = await self._client.eval(RENEW_SCRIPT, 1, self._key, self._value, LEASE_MS)
        if result == 0:
            self._lost.note(_text(await self._client.get(self._key)))
        elif result == 2:
            self._lapsed.note()

    async def _refresh(self) -> dict[int, Address]:
        keys = sorted({_text(key) for key in  # type: ignore[misc]
                       [key async for key in self._client.scan_iter(
                           match=key_pattern(self._channel), count=SCAN_COUNT)]})
        values = await self._client.mget(keys) if keys else []
        return entries(self._channel, dict(zip(keys, map(_text, values))))

    async def give_up(self) -> None:
        """Stop renewing and delete our entry if it is still ours (errors are logged)."""
        self._renewing = False
        try:
            await self._client.eval(RELEASE_SCRIPT, 1, self._key, self._value)
        except Exception as exc:  # noqa: BLE001
            log.warning("could not give host entry %s up: %s", self._key,
                        adapters.scrub(" ".join(str(exc).split()), self._url))

    async def close(self) -> None:
        """Close the broker connection."""
        with contextlib.suppress(Exception):
            await self._client.aclose()
