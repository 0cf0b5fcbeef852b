"""Which peers are trusted proxies: a small set of IP networks parsed from a string.

Used by the master (``--forwarded-allow-ips``, ``--proxy-allow-from``) and by the
workers (``X-Forwarded-Proto`` and ``X-Forwarded-Host`` from trusted peers).
"""
from __future__ import annotations

import ipaddress
from collections.abc import Iterable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_ip(text: str) -> IPAddress | None:
    """``text`` as an IP address, or None when it is not a plain IP literal.

    Surrounding spaces and IPv6 scope ids (``fe80::1%eth0``) are refused.
    """
    if "%" in text:
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


class Trust:
    """A set of trusted networks; ``ip in trust`` tells whether an address is in one."""

    __slots__ = ("_networks", "_everything")

    def __init__(self, networks: Iterable[IPNetwork] = (), everything: bool = False) -> None:
        self._networks = tuple(networks)
        self._everything = everything

    @classmethod
    def parse(cls, text: str) -> Trust:
        """Build from comma-separated addresses and CIDRs, e.g. ``"127.0.0.1, 10.0.0.0/8"``.

        A bare address is a /32 or /128 network; host bits after the prefix are ignored
        (``10.1.2.3/8`` is ``10.0.0.0/8``); ``*`` trusts everything; empty entries are
        skipped, so ``""`` trusts nothing. Raises ValueError naming the first bad entry.
        """
        networks = []
        everything = False
        for entry in text.split(","):
            entry = entry.strip()
            if entry == "*":
                everything = True
            elif entry:
                try:
                    if "%" in entry:
                        raise ValueError(entry)
                    networks.append(ipaddress.ip_network(entry, strict=False))
                except ValueError:
                    raise ValueError(f"not an IP address or CIDR: {entry!r}") from None
        return cls(networks, everything)

    def __contains__(self, ip: object) -> bool:
        """Whether ``ip`` (a string or an ipaddress address) is trusted; False if not an IP.

        An IPv4-mapped IPv6 address (``::ffff:1.2.3.4``) also matches IPv4 networks.
        """
        addr = parse_ip(ip) if isinstance(ip, str) else ip
        if not isinstance(addr, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
            return False
        if self._everything:
            return True
        mapped = addr.ipv4_mapped if addr.version == 6 else None
        return any(addr in net or (mapped is not None and mapped in net) for net in self._networks)

    @property
    def everything(self) -> bool:
        """Whether every address is trusted (``*``)."""
        return self._everything

    def __bool__(self) -> bool:
        """False when nothing is trusted."""
        return self._everything or bool(self._networks)

    def __repr__(self) -> str:
        entries = ["*"] if self._everything else []
        return f"Trust.parse({', '.join(entries + [str(n) for n in self._networks])!r})"


class TrustCache:
    """``ip in trust`` for address strings, each answer kept: for a per-connection check.

    A lookup of an address seen before is one dict look-up (no parsing), so the check
    costs next to nothing for the few proxies a cluster sits behind. At most ``limit``
    answers are kept (then they are dropped and learnt again), so a flood of distinct
    addresses cannot grow it.
    """

    __slots__ = ("_trust", "_answers", "_limit")

    def __init__(self, trust: Trust, limit: int = 4096) -> None:
        self._trust = trust
        self._answers: dict[str, bool] = {}
        self._limit = limit

    def __call__(self, ip: str) -> bool:
        """Whether the address ``ip`` (a string) is trusted."""
        answer = self._answers.get(ip)
        if answer is None:
            answer = ip in self._trust
            if len(self._answers) >= self._limit:
                self._answers.clear()
            self._answers[ip] = answer
        return answer
