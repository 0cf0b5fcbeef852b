"""Check, before forking, that the adapter's broker answers: one line when it does not.

The master calls :func:`check_broker`, which runs this module as a short-lived child
process (``python -m cluster.setup.broker_check``), the URL on its standard input: the broker
clients (redis, valkey, kombu, and python-socketio's Sentinel URL parser) are imported
there, never in the master, whose process stays small; and the URL, which may hold a
password, is never on a command line that ``ps`` shows. The child PINGs Redis or Valkey
(through the Sentinels for a ``+sentinel`` URL: the primary they name must answer) or
opens an AMQP connection, and exits 0, or prints one line naming the URL without its
password (:func:`cluster.protocol.adapters.redact`) and exits 1.
"""
from __future__ import annotations

import importlib
import subprocess
import sys
from types import ModuleType
from typing import Any

from cluster.protocol import adapters

TIMEOUT = 3.0
"""Seconds to connect to the broker, and for it to answer."""


def check_broker(url: str, channel: str) -> str | None:
    """Check the broker at ``url`` in a child process; return a one-line error, or None."""
    try:
        done = subprocess.run([sys.executable, "-m", "cluster.setup.broker_check", channel],
                              input=url, capture_output=True, text=True, timeout=10 * TIMEOUT)
    except subprocess.TimeoutExpired:
        return f"the broker at {adapters.redact(url)} did not answer in {10 * TIMEOUT:.0f} s"
    if done.returncode == 0:
        return None
    lines = done.stdout.strip().splitlines() or done.stderr.strip().splitlines()
    return adapters.scrub(lines[-1] if lines else "the broker check failed", url)


def probe(url: str, channel: str, timeout: float = TIMEOUT) -> str | None:
    """Ask the broker at ``url`` to answer, in this process; return a one-line error, or None."""
    shown = adapters.redact(url)
    try:
        scheme = adapters.scheme_of(url)
    except adapters.AdapterURLError as exc:
        return str(exc)
    try:
        module = importlib.import_module(scheme.module)
    except ImportError:
        return (f"the adapter {shown} needs the Python package {scheme.module!r} (sticky-cluster's "
                f"{scheme.extra} extra): pip install {scheme.module}")
    try:
        if scheme.family == "amqp":
            _probe_amqp(module, url, timeout)
        else:
            _probe_redis(module, url, channel, timeout)
    except Exception as exc:  # noqa: BLE001 - any failure is the one line we report
        reason = " ".join(str(exc).split()) or type(exc).__name__
        return adapters.scrub(f"cannot reach the broker at {shown}: {reason}", url)
    return None


def redis_client(module: ModuleType, url: str, channel: str, timeout: float) -> Any:
    """A client of the Redis-family broker at ``url`` (through its Sentinels for a
    ``+sentinel`` URL: the primary they name for the service, or ``channel``).

    ``module`` is the client package (``redis``, ``valkey``) or its asyncio twin
    (``redis.asyncio``, ``valkey.asyncio``): both offer ``Redis.from_url`` and
    ``sentinel.Sentinel``. ``timeout`` bounds the connection and each answer.
    """
    timeouts = {"socket_connect_timeout": timeout, "socket_timeout": timeout}
    if adapters.scheme_of(url).sentinel:
        from socketio.redis_manager import parse_redis_sentinel_url

        sentinels, service, options = parse_redis_sentinel_url(url)
        sentinel = module.sentinel.Sentinel(sentinels, sentinel_kwargs=timeouts,
                                            **options, **timeouts)
        return sentinel.master_for(service or channel)
    return module.Redis.from_url(url, **timeouts)


def _probe_redis(module: ModuleType, url: str, channel: str, timeout: float) -> None:
    client = redis_client(module, url, channel, timeout)
    try:
        client.ping()
    finally:
        client.close()


def _probe_amqp(kombu: ModuleType, url: str, timeout: float) -> None:
    with kombu.Connection(url, connect_timeout=timeout) as connection:
        connection.ensure_connection(max_retries=1, timeout=timeout)


def main() -> int:
    """``python -m cluster.setup.broker_check CHANNEL`` with the URL on standard input."""
    error = probe(sys.stdin.read().strip(), sys.argv[1] if len(sys.argv) > 1 else "socketio")
    if error:
        print(error)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
