"""Claim and give up this host's id in the directory, for the master, in a child process.

The master never imports a broker client: :func:`claim` and :func:`release` run this
module as a short child (``python -m cluster.hosts.lease claim|release …``) with the
adapter URL on its standard input (a password never shows in ``ps``), as
:mod:`cluster.setup.broker_check` does. The child prints the id claimed, or one line and
exits 1; the parent raises :class:`LeaseError` with that line, the URL's passwords
masked.

Claim rules: a ``wanted`` id is taken with ``SET NX PX``; if it is held with our own
address (this host restarted before its lease ran out) it is taken over; held with
another address, the claim fails. No ``wanted`` id: the first free id from 1. Release
deletes the entry only while it is still ours (compare-and-delete).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from typing import Any

from cluster.protocol import adapters
from cluster.protocol.sids import HOST_LIMIT

from .addresses import LEASE_MS, Address, format_address, key_of, parse_address

TIMEOUT = 3.0
"""Seconds the child may take, all told."""

BATCH = 256
"""Ids looked at per round trip when looking for a free one."""

TAKE_OVER_SCRIPT = """
local held = redis.call('get', KEYS[1])
if held == ARGV[1] then redis.call('pexpire', KEYS[1], ARGV[2]) return 1 end
if not held then redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end
return held
"""
"""Take the entry if free or ours (1); else return who holds it."""


class LeaseError(RuntimeError):
    """The host id could not be claimed or released; the message is one line, no password."""


def claim(url: str, channel: str, address: Address, wanted: int | None,
          limit: int = HOST_LIMIT) -> int:
    """Claim a host id in the directory at ``url`` for ``address``; return it.

    :param wanted: the id asked for (``--host-id``), or None for the first free one.
    :param limit: ids are looked for below it (the id space; smaller in tests).
    :raises LeaseError: the id is held by another address, every id is taken, or the
                        broker cannot be reached.
    """
    args = ["claim", channel, format_address(address), str(wanted or 0), str(limit)]
    return int(_run(url, args))


def release(url: str, channel: str, host_id: int, address: Address) -> None:
    """Delete host ``host_id``'s entry if it still holds ``address``.

    :raises LeaseError: the broker cannot be reached.
    """
    _run(url, ["release", channel, str(host_id), format_address(address)])


def _run(url: str, args: list[str]) -> str:
    shown = adapters.redact(url)
    try:
        done = subprocess.run([sys.executable, "-m", "cluster.hosts.lease", *args], input=url,
                              capture_output=True, text=True, timeout=TIMEOUT + 5)
    except subprocess.TimeoutExpired:
        raise LeaseError(f"the broker at {shown} did not answer in time") from None
    lines = done.stdout.strip().splitlines() or done.stderr.strip().splitlines()
    last = lines[-1] if lines else f"the host id child exited {done.returncode}"
    if done.returncode != 0:
        raise LeaseError(adapters.scrub(last, url))
    return last


def claim_now(client: Any, channel: str, address: str, wanted: int, limit: int) -> int:
    """Claim with a connected client (in the child); LeaseError when it cannot be had."""
    if wanted:
        held = client.eval(TAKE_OVER_SCRIPT, 1, key_of(channel, wanted), address, LEASE_MS)
        if held != 1:
            holder = held.decode() if isinstance(held, bytes) else held
            raise LeaseError(f"host id {wanted} is held by {holder} (another master): give "
                             "another --host-id, or none to be given a free one")
        return wanted
    for start in range(1, limit, BATCH):
        ids = range(start, min(start + BATCH, limit))
        values = client.mget([key_of(channel, host_id) for host_id in ids])
        for host_id, value in zip(ids, values):
            if value is None and client.set(key_of(channel, host_id), address, nx=True,
                                            px=LEASE_MS):
                return host_id
    raise LeaseError(f"every host id (1 to {limit - 1}) is held on channel {channel!r}: no "
                     "free one; stop a master or give the cluster another --channel")


def release_now(client: Any, channel: str, host_id: int, address: str) -> None:
    """Release with a connected client (in the child)."""
    from .directory import RELEASE_SCRIPT

    client.eval(RELEASE_SCRIPT, 1, key_of(channel, host_id), address)


def main(argv: list[str] | None = None) -> int:
    """``python -m cluster.hosts.lease claim CHANNEL ADDRESS WANTED LIMIT`` or ``… release
    CHANNEL HOST_ID ADDRESS``, the URL on standard input: prints the id (claim), or one line
    and exits 1."""
    parser = argparse.ArgumentParser(prog="python -m cluster.hosts.lease")
    commands = parser.add_subparsers(dest="command", required=True)
    claiming = commands.add_parser("claim")
    claiming.add_argument("channel")
    claiming.add_argument("address")
    claiming.add_argument("wanted", type=int)
    claiming.add_argument("limit", type=int)
    releasing = commands.add_parser("release")
    releasing.add_argument("channel")
    releasing.add_argument("host_id", type=int)
    releasing.add_argument("address")
    args = parser.parse_args(argv)
    url = sys.stdin.read().strip()
    from .directory import TIMEOUT as CONNECT_TIMEOUT, client_module
    from cluster.setup.broker_check import redis_client

    try:
        address = format_address(parse_address(args.address))
        client = redis_client(client_module(url, False), url, args.channel, CONNECT_TIMEOUT)
        try:
            if args.command == "claim":
                print(claim_now(client, args.channel, address, args.wanted, args.limit))
            else:
                release_now(client, args.channel, args.host_id, address)
        finally:
            client.close()
    except LeaseError as exc:
        print(exc)
        return 1
    except Exception as exc:  # noqa: BLE001 - any failure is the one line we report
        reason = " ".join(str(exc).split()) or type(exc).__name__
        print(adapters.scrub(f"cannot reach the broker at {adapters.redact(url)}: {reason}", url))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
