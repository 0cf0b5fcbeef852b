"""The master's settings: one validated object, built by the CLI or by ``Master(...)``.

The options themselves (defaults, checks, help) are the table in :mod:`cluster.setup.options`;
this module turns user-facing values into :class:`Settings` and checks what involves
more than one option.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import os
import socket

from cluster.hosts.addresses import Address, format_address, parse_advertise, parse_peers
from cluster.protocol import adapters
from cluster.protocol.trust import Trust

from . import container
from .options import BY_NAME, SETTINGS, default
from .privileges import Identity, IdentityError, resolve


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


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything the master needs, checked when made.

    One field per option of :data:`cluster.setup.options.OPTIONS` (its ``settings_field``),
    with the table's default; ``target`` is the app.
    """

    target: object
    workers: int = dataclasses.field(default_factory=lambda: default("workers"))
    binds: tuple[Bind, ...] = tuple(parse_bind(b) for b in default("bind"))
    adapter: str | None = default("adapter")
    channel: str = default("channel")
    worker_connections: int = default("worker_connections")
    threads: int | None = default("threads")
    log_level: str = default("log_level")
    log_file: str | None = default("log_file")
    pid_file: str | None = default("pid_file")
    timeout: float = default("timeout")
    graceful_timeout: float = default("graceful_timeout")
    boot_timeout: float = default("boot_timeout")
    drain_spread: float = default("drain_spread")
    roll_after: str = default("roll_after")
    max_worker_memory: int | None = default("max_worker_memory")
    max_worker_memory_jitter: int | None = default("max_worker_memory_jitter")
    max_worker_age: float | None = default("max_worker_age")
    max_worker_age_jitter: float | None = default("max_worker_age_jitter")
    runtime: str = default("worker_class")
    route: str = default("route")
    balance: str = default("balance")
    overload: str = default("overload")
    proxy_protocol: bool = default("proxy_protocol")
    forwarded_allow_ips: str = default("forwarded_allow_ips")
    peek_timeout: float = default("peek_timeout")
    umask: int | None = default("umask")
    user: str | None = default("user")
    group: str | None = default("group")
    status_bind: Bind | None = default("status_bind")
    control: str | None = default("control")
    """The control socket's path; None: beside the pid file, if there is one."""
    access_log: str | None = default("access_log")
    access_log_format: str = default("access_log_format")
    log_format: str = default("log_format")
    header_timeout: float = default("header_timeout")
    keepalive_timeout: float = default("keepalive_timeout")
    websocket_rate: float = default("websocket_rate")
    websocket_deflate: bool = default("websocket_deflate")
    hook_timeout: float = default("hook_timeout")
    reload: bool = default("reload")
    reload_dirs: tuple[str, ...] = default("reload_dir")
    proxy_allow_from: str = default("proxy_allow_from")
    host_id: int | None = default("host_id")
    advertise: str | None = default("advertise")
    peers: str = default("peers")

    def __post_init__(self) -> None:
        if isinstance(self.target, str) and ":" not in self.target:
            raise ConfigError(f"bad target {self.target!r}: expected MODULE:ATTRIBUTE")
        if not self.binds:
            raise ConfigError("at least one bind address is needed")
        for option in SETTINGS:
            try:
                option.validate(getattr(self, option.settings_field))
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
        self.identity  # noqa: B018 - resolved now, so a bad name is one line before binding
        if (self.max_worker_memory is not None and self.max_worker_memory_jitter is not None
                and self.max_worker_memory_jitter >= self.max_worker_memory):
            raise ConfigError("max worker memory jitter must be less than max worker memory")
        if self.adapter is None and self.channel != default("channel"):
            raise ConfigError("--channel names a pub/sub channel of --adapter; the embedded "
                              "relay has none")
        if self.several_hosts:
            why = self._several_hosts_refusal()
            if why:
                raise ConfigError(why)

    @property
    def several_hosts(self) -> bool:
        """Whether this master shares sessions with others (``--host-id``, ``--advertise``
        or ``--peers`` given): its sids name its host, a forwarder runs beside its workers."""
        return self.host_id is not None or bool(self.advertise) or bool(self.peers)

    @property
    def advertise_address(self) -> Address | None:
        """Where the other masters reach this one: ``--advertise``, else the first
        ``--bind`` when it names a specific IP (None: neither, or one host only)."""
        if self.advertise:
            return parse_advertise(self.advertise)
        first = self.binds[0]
        if first.family == socket.AF_UNIX or ipaddress.ip_address(first.address[0]).is_unspecified:
            return None
        return first.address  # type: ignore[return-value]

    @property
    def static_peers(self) -> dict[int, Address]:
        """``--peers``: host id -> address (empty: the directory lives in the adapter)."""
        return parse_peers(self.peers)

    def _several_hosts_refusal(self) -> str | None:
        """Why these several-hosts options cannot work together (one line), or None."""
        if self.route != "sid":
            return ("several hosts need --route sid: a request goes to its session's host by "
                    "the sid it carries")
        address = self.advertise_address
        if address is None:
            return (f"several hosts need --advertise HOST:PORT: other masters must reach this "
                    f"one; --bind {self.binds[0]} names no address")
        if not _is_ip(address[0]):
            return (f"--advertise {format_address(address)}: give an IP address, not a name "
                    "(the other masters know a forwarded connection by the IP it comes from)")
        peers = self.static_peers
        named = [format_address(where) for where in peers.values() if not _is_ip(where[0])]
        if named:
            return (f"--peers {named[0]}: give an IP address, not a name (a forwarded "
                    "connection is known by the IP it comes from)")
        if peers:
            if self.host_id is None:
                return ("--peers needs --host-id N: which of the peers this host is")
            for host, where in peers.items():
                if where == address and host != self.host_id:
                    return (f"--peers gives this host's address {format_address(address)} to "
                            f"host {host}, but --host-id is {self.host_id}")
                if host == self.host_id and where != address:
                    return (f"--peers puts host {host} at {format_address(where)}, but this "
                            f"host advertises {format_address(address)}")
            return None
        if self.adapter is None:
            return ("several hosts need a directory of hosts: give --adapter redis://… (a "
                    "Redis-family broker carries it) or --peers ID=HOST:PORT,…")
        if adapters.scheme_of(self.adapter).family != "redis":
            scheme = self.adapter.partition(":")[0]
            return (f"--adapter {scheme}://… cannot carry the "
                    "directory of hosts: give --peers ID=HOST:PORT,…")
        return None

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
    def proxy_peers(self) -> Trust:
        """The peers whose PROXY protocol header is believed (``proxy_allow_from``)."""
        return Trust.parse(self.proxy_allow_from)

    @property
    def heartbeat_interval(self) -> float:
        """Seconds between worker heartbeats: several per ``timeout``."""
        return min(1.0, self.timeout / 4)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _trust(text: str) -> Trust:
    try:
        return Trust.parse(text)
    except ValueError as exc:
        raise ConfigError(f"bad forwarded-allow-ips: {exc}") from None


def parse_umask(text: str) -> int:
    """An octal umask such as ``027``."""
    try:
        return int(text, 8)
    except ValueError:
        raise ConfigError(f"bad umask {text!r}: expected an octal number such as 027") from None


def make_settings(target: object, **options: object) -> Settings:
    """Build Settings from user-facing values, checking each one.

    ``options`` are keywords of :data:`cluster.setup.options.OPTIONS` (``bind="HOST:PORT"`` or
    a list of them, ``umask="027"``, ``worker_class="gevent"``) or Settings fields; None
    keeps the default, or the environment's (``WEB_CONCURRENCY``, ``PORT``:
    :mod:`cluster.setup.container`). Raises TypeError for a name that is neither (as a call would).
    """
    known = {field.name for field in dataclasses.fields(Settings)} - {"target"}
    unknown = set(options) - known - {option.name for option in SETTINGS}
    if unknown:
        raise TypeError(f"unknown option(s): {', '.join(sorted(unknown))}")
    values = {BY_NAME[name].settings_field if name in BY_NAME else name: value
              for name, value in options.items() if value is not None}
    try:  # the platform's defaults, as gunicorn reads them
        if "workers" not in values:
            values["workers"] = container.default_workers(os.environ)
        if "binds" not in values and (port_bind := container.default_bind(os.environ)):
            values["binds"] = port_bind
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if isinstance(values.get("umask"), str):
        values["umask"] = parse_umask(values["umask"])  # type: ignore[arg-type]
    binds = values.get("binds")
    if isinstance(binds, (str, list, tuple)):
        values["binds"] = tuple(parse_bind(b) if isinstance(b, str) else b
                                for b in ([binds] if isinstance(binds, str) else binds))
    if isinstance(values.get("reload_dirs"), str):
        values["reload_dirs"] = (values["reload_dirs"],)
    elif isinstance(values.get("reload_dirs"), list):
        values["reload_dirs"] = tuple(values["reload_dirs"])  # type: ignore[arg-type]
    if isinstance(values.get("status_bind"), str):
        values["status_bind"] = parse_bind(values["status_bind"])  # type: ignore[arg-type]
    return Settings(target, **values)  # type: ignore[arg-type]
