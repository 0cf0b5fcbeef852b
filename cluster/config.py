"""The master's settings: one validated object, built by the CLI or by ``Master(...)``."""
from __future__ import annotations

import dataclasses
import ipaddress
import os
import socket

from .privileges import Identity, IdentityError, resolve
from workers.access_log import DEFAULT_FORMAT as DEFAULT_ACCESS_LOG_FORMAT
from workers.access_log import check_format as check_access_log_format

from . import adapters
from .trust import Trust

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
ROUTES = ("sid", "ip")
LOG_FORMATS = ("text", "json")
BALANCES = ("least-loaded", "ip", "random")
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
    """Check the shape of an adapter URL (:data:`cluster.adapters.SCHEMES`); return it."""
    try:
        adapters.scheme_of(url)
    except adapters.AdapterURLError as exc:
        raise ConfigError(str(exc)) from None
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
    balance: str = "least-loaded"
    proxy_protocol: bool = False
    forwarded_allow_ips: str = ""
    peek_timeout: float = 5.0
    umask: int | None = None
    user: str | None = None
    group: str | None = None
    status_bind: Bind | None = None
    """Where the status HTTP server listens (``/metrics``, ``/healthz``, ``/status``, ``/``)."""
    control: str | None = None
    """The control socket's path; None: beside the pid file, if there is one."""
    access_log: str | None = None
    access_log_format: str = DEFAULT_ACCESS_LOG_FORMAT
    log_format: str = "text"
    header_timeout: float = 60.0
    keepalive_timeout: float = 75.0
    websocket_rate: float = 16_000_000

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
        if self.balance not in BALANCES:
            raise ConfigError(f"bad balance {self.balance!r}: use one of {', '.join(BALANCES)}")
        _positive("peek timeout", self.peek_timeout)
        _positive("header timeout", self.header_timeout)
        _positive("keepalive timeout", self.keepalive_timeout)
        _positive("websocket rate", self.websocket_rate)
        _trust(self.forwarded_allow_ips)
        if self.umask is not None and not 0 <= self.umask <= 0o777:
            raise ConfigError(f"bad umask {self.umask:o}: use 000 to 777 (octal)")
        self.identity  # noqa: B018 - resolved now, so a bad name is one line before binding
        if self.log_format not in LOG_FORMATS:
            raise ConfigError(f"bad log format {self.log_format!r}: use one of {', '.join(LOG_FORMATS)}")
        try:
            check_access_log_format(self.access_log_format)
        except ValueError as exc:
            raise ConfigError(f"bad access log format: {exc}") from None

    @property
    def identity(self) -> Identity | None:
        """Who the workers run as (``user``/``group``); None: the master's own identity."""
        try:
            return resolve(self.user, self.group)
        except IdentityError as exc:
            raise ConfigError(str(exc)) from None

    @property
    def control_path(self) -> str | None:
        """The control socket's path: ``control``, else ``PID_FILE.ctl``, else None."""
        if self.control:
            return self.control
        return f"{self.pid_file}.ctl" if self.pid_file else None

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


def parse_umask(text: str) -> int:
    """An octal umask such as ``027``."""
    try:
        return int(text, 8)
    except ValueError:
        raise ConfigError(f"bad umask {text!r}: expected an octal number such as 027") from None


def make_settings(target: object, *, bind: str | list[str] | tuple[str, ...] | None = None,
                  **options: object) -> Settings:
    """Build Settings from user-facing values (``bind`` as strings), checking each one.

    Raises TypeError for a name that is no option (as a function call would).
    """
    if "worker_class" in options:
        options["runtime"] = options.pop("worker_class")
    unknown = set(options) - {field.name for field in dataclasses.fields(Settings)} - {"binds"}
    if unknown:
        raise TypeError(f"unknown option(s): {', '.join(sorted(unknown))}")
    if isinstance(options.get("umask"), str):
        options["umask"] = parse_umask(options["umask"])  # type: ignore[arg-type]
    if bind is not None:
        binds = [bind] if isinstance(bind, str) else list(bind)
        options["binds"] = tuple(parse_bind(b) for b in binds)
    if isinstance(options.get("status_bind"), str):
        options["status_bind"] = parse_bind(options["status_bind"])  # type: ignore[arg-type]
    options = {k: v for k, v in options.items() if v is not None}
    return Settings(target, **options)  # type: ignore[arg-type]
