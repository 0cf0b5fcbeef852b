"""The master's settings: one validated object, built by the CLI or by ``Master(...)``."""
from __future__ import annotations

import dataclasses
import ipaddress
import os
import socket
import urllib.parse

from .trust import Trust

ADAPTER_SCHEMES = ("redis", "rediss", "unix")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
ROUTES = ("sid", "ip")
WORKER_CLASSES = ("auto", "eventlet", "gevent", "asyncio")


class ConfigError(ValueError):
    """A setting is wrong; the message is one line meant for the user."""


@dataclasses.dataclass(frozen=True)
class Bind:
    """One address the master listens on."""

    family: int
    address: tuple[str, int] | str

    def __str__(self) -> str:
        if self.family == socket.AF_UNIX:
            return f"unix:{self.address}"
        host, port = self.address  # type: ignore[misc]
        return f"[{host}]:{port}" if self.family == socket.AF_INET6 else f"{host}:{port}"


def parse_bind(text: str) -> Bind:
    """Parse ``HOST:PORT``, ``[IPV6]:PORT`` or ``unix:/path``."""
    text = text.strip()
    if text.startswith("unix:"):
        path = text[len("unix:"):]
        if not path:
            raise ConfigError(f"bad bind {text!r}: unix: needs a path")
        return Bind(socket.AF_UNIX, path)
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(f"bad bind {text!r}: expected HOST:PORT, [IPV6]:PORT or unix:PATH")
    port = int(port_text)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    host = host or "0.0.0.0"
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    except ValueError:
        try:
            info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror:
            raise ConfigError(f"bad bind {text!r}: unknown host {host!r}") from None
        family, host = info[0][0], info[0][4][0]
    return Bind(family, (host, port))


def check_adapter(url: str) -> str:
    """Check the shape of a Redis adapter URL; return it."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ADAPTER_SCHEMES:
        raise ConfigError(f"bad adapter URL {url!r}: the scheme must be one of "
                          + ", ".join(f"{s}://" for s in ADAPTER_SCHEMES))
    try:
        parsed.port
    except ValueError:
        raise ConfigError(f"bad adapter URL {url!r}: bad port") from None
    if parsed.scheme == "unix" and not parsed.path:
        raise ConfigError(f"bad adapter URL {url!r}: unix:// needs a socket path")
    return url


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything the master needs, checked when made (see :class:`cluster.Master`)."""

    target: object
    workers: int = dataclasses.field(default_factory=lambda: os.cpu_count() or 1)
    binds: tuple[Bind, ...] = (Bind(socket.AF_INET, ("127.0.0.1", 5000)),)
    adapter: str | None = None
    channel: str = "sticky-cluster"
    worker_connections: int = 10_000
    log_level: str = "info"
    log_file: str | None = None
    pid_file: str | None = None
    timeout: float = 30.0
    graceful_timeout: float = 30.0
    runtime: str = "auto"
    route: str = "sid"
    proxy_protocol: bool = False
    forwarded_allow_ips: str = ""
    peek_timeout: float = 5.0

    def __post_init__(self) -> None:
        if isinstance(self.target, str) and ":" not in self.target:
            raise ConfigError(f"bad target {self.target!r}: expected MODULE:ATTRIBUTE")
        _positive("workers", self.workers)
        _positive("worker connections", self.worker_connections)
        _positive("timeout", self.timeout)
        if self.graceful_timeout < 0:
            raise ConfigError("graceful timeout must be 0 or more")
        if not self.binds:
            raise ConfigError("at least one bind address is needed")
        if self.log_level not in LOG_LEVELS:
            raise ConfigError(f"bad log level {self.log_level!r}: use one of {', '.join(LOG_LEVELS)}")
        if self.adapter is not None:
            check_adapter(self.adapter)
        if not self.channel:
            raise ConfigError("the channel name cannot be empty")
        if self.runtime not in WORKER_CLASSES:
            raise ConfigError(f"bad worker class {self.runtime!r}: use one of {', '.join(WORKER_CLASSES)}")
        if self.route not in ROUTES:
            raise ConfigError(f"bad route {self.route!r}: use one of {', '.join(ROUTES)}")
        _positive("peek timeout", self.peek_timeout)
        _trust(self.forwarded_allow_ips)

    @property
    def trusted_proxies(self) -> Trust:
        """The peers whose ``X-Forwarded-For`` is believed (``forwarded_allow_ips``)."""
        return _trust(self.forwarded_allow_ips)

    @property
    def heartbeat_interval(self) -> float:
        """Seconds between worker heartbeats: several per ``timeout``."""
        return min(1.0, self.timeout / 4)


def _trust(text: str) -> Trust:
    try:
        return Trust.parse(text)
    except ValueError as exc:
        raise ConfigError(f"bad forwarded-allow-ips: {exc}") from None


def _positive(name: str, value: float) -> None:
    if value <= 0:
        raise ConfigError(f"{name} must be more than 0, got {value}")


def make_settings(target: object, *, bind: str | list[str] | tuple[str, ...] | None = None,
                  **options: object) -> Settings:
    """Build Settings from user-facing values (``bind`` as strings), checking each one."""
    if bind is not None:
        binds = [bind] if isinstance(bind, str) else list(bind)
        options["binds"] = tuple(parse_bind(b) for b in binds)
    options = {k: v for k, v in options.items() if v is not None}
    return Settings(target, **options)  # type: ignore[arg-type]
