"""Where ``sticky-cluster balancer`` finds the directory of hosts: ``--peers``, else the adapter.

With ``--peers ID=HOST:PORT,…`` the directory is that list, as the masters were given it.
Otherwise it is read from the Redis-family broker of ``--adapter`` on ``--channel``
(:func:`cluster.hosts.directory.read`: the entries the masters hold leases on). An AMQP
adapter or the embedded relay carries no directory. Every failure is a
:class:`DirectoryUnavailable` of one line, the broker's password left out.

The broker client is imported only when the directory is read, by this command's own
process: the master never imports this module.
"""
from __future__ import annotations

from cluster.hosts.addresses import Address, parse_peers
from cluster.protocol import adapters


class DirectoryUnavailable(Exception):
    """The directory of hosts could not be had (one line, for the user)."""


def directory_of(adapter: str | None, channel: str, peers: str | None) -> dict[int, Address]:
    """{host id: advertised address} from ``peers`` when given, else read from ``adapter``."""
    if peers:
        try:
            return parse_peers(peers)
        except ValueError as exc:
            raise DirectoryUnavailable(str(exc)) from None
    if not adapter:
        raise DirectoryUnavailable("say where the directory of hosts is: --adapter URL (the "
                                   "masters' Redis) or --peers ID=HOST:PORT,…")
    try:
        scheme = adapters.scheme_of(adapter)
    except adapters.AdapterURLError as exc:
        raise DirectoryUnavailable(str(exc)) from None
    shown = adapters.redact(adapter)
    if scheme.family != "redis":
        raise DirectoryUnavailable(f"--adapter {shown} cannot carry the directory of hosts: "
                                   "give --peers ID=HOST:PORT,…")
    from cluster.hosts import directory  # the broker client is imported when it reads

    try:
        return directory.read(adapter, channel)
    except ImportError:
        extra = f" (sticky-cluster's {scheme.extra} extra)" if scheme.extra else ""
        raise DirectoryUnavailable(
            f"the adapter {shown} needs the Python package {scheme.module!r}{extra}: "
            f"pip install {scheme.module}") from None
    except Exception as exc:  # noqa: BLE001 - any failure of the broker is the one line we report
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise DirectoryUnavailable(adapters.scrub(
            f"cannot read the directory of hosts from {shown}: {reason}", adapter)) from None
