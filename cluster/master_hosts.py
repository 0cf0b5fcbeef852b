"""This host among several: its id, claimed at start and given up at exit, and its forwarder.

With several hosts (``--host-id``, ``--advertise``, ``--peers``) the master, before it
forks anyone, takes its host id: from ``--host-id`` with ``--peers`` (a static directory),
else claimed in the adapter's directory of hosts (:func:`cluster.hosts.lease.claim`: a
short child process, so that the master never imports a broker client). A claim that
fails stops the master with one line. At exit the id is given up
(:func:`cluster.hosts.lease.release`) as a backstop: the forwarder gives it up first,
when it drains. The forwarder's settings are made here from the master's
(:class:`cluster.hosts.forwarder_config.ForwarderConfig`), and the peers' IPs, whose
PROXY v2 header the intake believes, from ``--peers`` or from the forwarder's ``HOSTS``.
"""
from __future__ import annotations

import logging
from typing import Callable

from cluster.hosts import lease
from cluster.hosts.addresses import Address, parse_address
from cluster.hosts.forwarder_config import ForwarderConfig
from cluster.pool.forwarder_process import ForwarderHooks, ForwarderProcess, fork_forwarder
from cluster.setup.config import Settings
from cluster.setup.preflight import ClusterError

log = logging.getLogger("sticky_cluster.master")


class HostId:
    """This host's id among the hosts that share sessions (0: a host alone).

    :param settings: ``host_id``, ``advertise`` (or the bind), ``peers``, ``adapter`` and
                     ``channel``; the timeouts the forwarder gets.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.id = 0
        """This host's id once claimed (0 until then, and with one host)."""
        self._leased = False

    @property
    def address(self) -> Address:
        """Where the other masters reach this one (``--advertise``, else the bind)."""
        address = self._settings.advertise_address
        assert address is not None  # Settings refuses several hosts without one
        return address

    def claim(self) -> int:
        """Take this host's id; raise :class:`ClusterError` (one line) when it cannot."""
        settings = self._settings
        if settings.static_peers:
            self.id = settings.host_id  # type: ignore[assignment]  # required with --peers
        else:
            try:
                self.id = lease.claim(settings.adapter, settings.channel,  # type: ignore[arg-type]
                                      self.address, settings.host_id)
            except lease.LeaseError as exc:
                raise ClusterError(str(exc)) from None
            self._leased = True
        log.info("host id %d, reached by the other hosts at %s:%d", self.id, *self.address)
        return self.id

    def release(self) -> None:
        """Give the claimed id up, if it is still ours (a failure is logged)."""
        if not self._leased:
            return
        self._leased = False
        try:
            lease.release(self._settings.adapter, self._settings.channel,  # type: ignore[arg-type]
                          self.id, self.address)
        except lease.LeaseError as exc:
            log.warning("host id %d not given up: %s (its lease runs out by itself)",
                        self.id, exc)

    def config(self) -> ForwarderConfig:
        """What the forwarder is told (the id must be claimed)."""
        settings = self._settings
        peers = settings.static_peers
        return ForwarderConfig(
            host_id=self.id, advertise=self.address,
            adapter=None if peers else settings.adapter, channel=settings.channel,
            peers=peers, header_timeout=settings.header_timeout,
            keepalive_timeout=settings.keepalive_timeout,
            heartbeat_interval=settings.heartbeat_interval,
            graceful_timeout=settings.graceful_timeout,
            forwarded_allow_ips=settings.forwarded_allow_ips,
            connection_limit=settings.worker_connections)

    def forwarder(self, hooks: ForwarderHooks,
                  forget_in_child: Callable[[], None]) -> ForwarderProcess:
        """The supervisor of this host's forwarder (not started)."""
        identity = self._settings.identity
        return ForwarderProcess(
            self.config, hooks, self._settings.timeout,
            lambda config: fork_forwarder(config, forget_in_child, identity))

    def peer_ips(self, peers: dict[int, Address]) -> frozenset[str]:
        """The IPs of the hosts of ``peers`` but this one."""
        return frozenset(address[0] for host, address in peers.items() if host != self.id)

    def peer_ips_of(self, facts: dict) -> frozenset[str]:
        """The IPs of the other hosts in a forwarder's ``HOSTS`` message (entries that
        are not ``"ID": "HOST:PORT"`` are left out)."""
        hosts = facts.get("hosts")
        peers: dict[int, Address] = {}
        if isinstance(hosts, dict):
            for host, text in hosts.items():
                try:
                    peers[int(host)] = parse_address(str(text))
                except ValueError:
                    continue
        return self.peer_ips(peers)
