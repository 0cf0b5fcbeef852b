"""Check, before forking, that the Redis adapter answers."""
from __future__ import annotations

import redis


def check_redis(url: str, timeout: float = 3.0) -> str | None:
    """PING the Redis server at ``url``; return a one-line error, or None when it answers."""
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    except ValueError as exc:
        return f"bad adapter URL {url!r}: {exc}"
    try:
        client.ping()
    except redis.exceptions.RedisError as exc:
        return f"cannot reach Redis at {url}: {exc}"
    finally:
        client.close()
    return None
