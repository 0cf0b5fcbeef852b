"""The forwarder's counts, and the HOSTS message that carries them to the master.

Totals since the forwarder started; the master keeps the last message for ``/metrics``
and the status page. Pure.
"""
from __future__ import annotations

import dataclasses
import json

from .addresses import Address, format_address


@dataclasses.dataclass
class PeerCounts:
    """What was forwarded to one peer host."""

    requests: int = 0
    """Requests forwarded (each request of a kept-alive connection counts)."""
    upgrades: int = 0
    """Websocket upgrades relayed (a ``101`` from the peer)."""
    bytes_in: int = 0
    """Bytes received from the peer (responses, and the upgraded streams' peer side)."""
    bytes_out: int = 0
    """Bytes sent to the peer (PROXY headers, requests, the upgraded streams' client side)."""
    errors: int = 0
    """Forwards that failed: connection refused or reset, no answer in time."""
    forward_seconds: float = 0.0
    """Seconds spent before each request reached the peer: connecting (a new connection)
    and writing the request head; the time a forward adds, less the extra network hop."""
    forwards: int = 0
    """Requests whose head reached the peer (the count ``forward_seconds`` sums over)."""

    def count_in(self, size: int) -> None:
        """``size`` more bytes received from the peer."""
        self.bytes_in += size

    def count_out(self, size: int) -> None:
        """``size`` more bytes sent to the peer."""
        self.bytes_out += size


@dataclasses.dataclass
class Refused:
    """Requests answered by the forwarder itself, by reason."""

    unknown_host: int = 0
    """A sid of a host not in the directory: ``400``."""
    loop: int = 0
    """Forwarded once already, or a directory entry naming this host's own address: ``502``."""
    unanswered: int = 0
    """The peer gave no response head within the header timeout: ``502``."""


@dataclasses.dataclass
class Counts:
    """Every count of the forwarder."""

    peers: dict[int, PeerCounts] = dataclasses.field(default_factory=dict)
    refused: Refused = dataclasses.field(default_factory=Refused)
    own: PeerCounts = dataclasses.field(default_factory=PeerCounts)
    """What was relayed to this host's own workers: the requests for this host that come
    on a client connection the forwarder holds (not forwards)."""

    def peer(self, host_id: int) -> PeerCounts:
        """The counts of peer ``host_id`` (made at its first forward)."""
        found = self.peers.get(host_id)
        if found is None:
            found = self.peers[host_id] = PeerCounts()
        return found


def hosts_message(hosts: dict[int, Address], counts: Counts) -> bytes:
    """The HOSTS payload: ``{"hosts": {"2": "HOST:PORT"}, "peers": {"2": {…}}, "refused": {…},
    "own": {…}}``."""
    return json.dumps({
        "hosts": {str(host_id): format_address(address)
                  for host_id, address in sorted(hosts.items())},
        "peers": {str(host_id): dataclasses.asdict(peer)
                  for host_id, peer in sorted(counts.peers.items())},
        "refused": dataclasses.asdict(counts.refused),
        "own": dataclasses.asdict(counts.own),
    }, separators=(",", ":")).encode()
