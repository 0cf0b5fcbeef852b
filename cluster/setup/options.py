"""The options of ``sticky-cluster run``: one table, every other listing is made from it.

Each :class:`Option` says, once, an option's keyword (``Master(workers=4)``), its flags
(``-w``, ``--workers``), its environment variable (``STICKY_CLUSTER_WORKERS``), its
default, its check, whether the workers need it, and its help text for ``--help`` and
for the docs. From :data:`OPTIONS` come the click options (:mod:`cluster.cli.cli`), the
defaults and checks of :class:`cluster.setup.config.Settings` (which also takes
``Master(**options)``), the worker-side fields of each
:class:`cluster.protocol.spec.WorkerSpec` (``Master._spec_for``), the options table of
docs/options.md and the rows of docs/runtimes.md's table of what each runtime enforces
(:mod:`cluster.protocol.support`; ``make docs-tables`` rewrites both with :func:`main`; tests
keep them equal),
as gunicorn's ``config.py`` does for its settings.

Checks raise ValueError with a one-line message; Settings turns it into ConfigError.
This module imports neither click nor the master: only the few parsers the checks need.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from typing import Any, Callable

from cluster.protocol.access_log_format import DEFAULT_FORMAT as DEFAULT_ACCESS_LOG_FORMAT
from cluster.protocol.access_log_format import check_format as check_access_log_format

from cluster.hosts.addresses import parse_advertise, parse_peers
from cluster.protocol import adapters, support
from cluster.protocol.sids import HOST_LIMIT
from cluster.protocol.trust import Trust

from .container import usable_cpus

ENV_PREFIX = "STICKY_CLUSTER_"

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
ROUTES = ("sid", "ip")
LOG_FORMATS = ("text", "json")
BALANCES = ("least-loaded", "ip", "random")
OVERLOADS = ("refuse", "queue")
ROLL_STEPS = ("ready", "drained")
WORKER_CLASSES = ("auto", "eventlet", "gevent", "asyncio", "threading")


def env_name(flag: str) -> str:
    """The environment variable of a long flag: ``--worker-class`` -> ``STICKY_CLUSTER_WORKER_CLASS``."""
    return ENV_PREFIX + flag.lstrip("-").replace("-", "_").upper()


# ------------------------------------------------------------------------ checks
# Each takes the option's label ("peek timeout") and a value that is not None.

def positive(label: str, value: float) -> None:
    """More than 0."""
    if value <= 0:
        raise ValueError(f"{label} must be more than 0, got {value}")


def not_negative(label: str, value: float) -> None:
    """0 or more."""
    if value < 0:
        raise ValueError(f"{label} must be 0 or more")


def not_empty(label: str, value: str) -> None:
    """Some text."""
    if not value:
        raise ValueError(f"the {label} name cannot be empty")


def adapter_url(_label: str, value: str) -> None:
    """The shape of a broker URL (:data:`cluster.protocol.adapters.SCHEMES`)."""
    adapters.scheme_of(value)  # AdapterURLError is a ValueError, worded for the user


def trusted_proxies(label: str, value: str) -> None:
    """Addresses and CIDRs, comma-separated (:meth:`cluster.protocol.trust.Trust.parse`)."""
    try:
        Trust.parse(value)
    except ValueError as exc:
        raise ValueError(f"bad {label.replace(' ', '-')}: {exc}") from None


def existing_paths(label: str, value: tuple[str, ...]) -> None:
    """Each path exists (a file or a directory)."""
    for path in value:
        if not os.path.exists(path):
            raise ValueError(f"--{label.replace(' ', '-')}: no such file or directory: {path}")


def file_mode_mask(_label: str, value: int) -> None:
    """A umask: 000 to 777 octal."""
    if not 0 <= value <= 0o777:
        raise ValueError(f"bad umask {value:o}: use 000 to 777 (octal)")


def host_id(_label: str, value: int) -> None:
    """A host id: 1 to 4095 (:data:`cluster.protocol.sids.HOST_LIMIT` - 1)."""
    if not 0 < value < HOST_LIMIT:
        raise ValueError(f"bad --host-id {value}: a number from 1 to {HOST_LIMIT - 1}")


def advertise(_label: str, value: str) -> None:
    """``HOST:PORT`` or ``[IPV6]:PORT`` (:func:`cluster.hosts.addresses.parse_advertise`)."""
    parse_advertise(value)


def peers(_label: str, value: str) -> None:
    """``ID=HOST:PORT,…`` (:func:`cluster.hosts.addresses.parse_peers`)."""
    parse_peers(value)


def access_log_format(_label: str, value: str) -> None:
    """gunicorn's atoms plus ours (:func:`cluster.protocol.access_log_format.check_format`)."""
    try:
        check_access_log_format(value)
    except ValueError as exc:
        raise ValueError(f"bad access log format: {exc}") from None


# ------------------------------------------------------------------------ the record

@dataclasses.dataclass(frozen=True)
class Option:
    """One option of ``sticky-cluster run``.

    :param name: its keyword for ``Master(...)`` and the click parameter's name.
    :param kind: ``int``, ``float``, ``str`` or ``bool`` (a flag without a value).
    :param help: the ``--help`` text (plain).
    :param doc: docs/options.md's "meaning" cell (markdown); the help text when empty.
    :param default: the value when the option is not given (None: not set).
    :param default_factory: computes the default at start instead (``workers``).
    :param shown_default: how the default reads (markdown), when its value does not say it.
    :param metavar: the value's name in ``--help`` and docs/options.md (choices show their list in ``--help``).
    :param short: a short flag (``-w``).
    :param flag: the long flag when it is not ``--`` + ``name`` with dashes (``--pid``).
    :param choices: the values it takes (lower case; the command line ignores case).
    :param multiple: given once per value (``--bind``; space-separated in the environment).
    :param field: the :class:`cluster.setup.config.Settings` field when it is not ``name``.
    :param check: ``check(label, value)`` raises ValueError with a one-line message.
    :param worker: the workers need it: it is a field of :class:`cluster.protocol.spec.WorkerSpec`.
    :param setting: False for a switch of the command line only (``--check``).
    """

    name: str
    kind: type
    help: str
    doc: str = ""
    default: object = None
    default_factory: Callable[[], object] | None = None
    shown_default: str | None = None
    metavar: str | None = None
    short: str | None = None
    flag: str | None = None
    choices: tuple[str, ...] = ()
    multiple: bool = False
    field: str | None = None
    check: Callable[[str, object], None] | None = None
    worker: bool = False
    setting: bool = True

    @property
    def long_flag(self) -> str:
        """``--workers``."""
        return self.flag or "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        """``STICKY_CLUSTER_WORKERS``."""
        return env_name(self.long_flag)

    @property
    def settings_field(self) -> str:
        """The name of its :class:`cluster.setup.config.Settings` field."""
        return self.field or self.name

    @property
    def label(self) -> str:
        """How messages name it: ``peek timeout``."""
        return self.name.replace("_", " ")

    def validate(self, value: object) -> None:
        """Raise ValueError (one line for the user) unless ``value`` is good; None is."""
        if value is None:
            return
        if self.choices and value not in self.choices:
            raise ValueError(f"bad {self.label} {value!r}: use one of {', '.join(self.choices)}")
        if self.check is not None:
            self.check(self.label, value)

    def default_text(self) -> str:
        """The default as docs/options.md shows it (markdown)."""
        if self.shown_default is not None:
            return self.shown_default
        value = self.default[0] if self.multiple else self.default  # type: ignore[index]
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return f"`{value}`" if isinstance(value, str) else str(value)

    def help_text(self) -> str:
        """The ``--help`` text, its default at the end."""
        default = self.default_text().replace("`", "")
        return f"{self.help}  [default: {default}]"

    def docs_row(self) -> str:
        """Its row in docs/options.md's table."""
        value = f" {self.metavar}" if self.metavar else ""
        flags = [f"`{self.short}`"] if self.short else []
        flags.append(f"`{self.long_flag}{value}`")
        cells = (", ".join(flags), self.default_text(), self.doc or self.help)
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


OPTIONS: tuple[Option, ...] = (
    Option("workers", int, short="-w", metavar="N", check=positive,
           default_factory=usable_cpus,
           shown_default="`$WEB_CONCURRENCY`, else the CPUs this process may use",
           help="Worker processes.",
           doc="worker processes; by default `WEB_CONCURRENCY`, else the CPUs this process may "
               "use (its affinity, capped by its cgroup's CPU quota: `docker --cpus`, a "
               "Kubernetes CPU limit)"),
    Option("worker_class", str, short="-k", metavar="NAME", field="runtime",
           choices=WORKER_CLASSES, default="auto",
           help="The workers' runtime: eventlet, gevent, asyncio or threading; auto takes the "
                "one the app needs (Server(async_mode=...), AsyncServer/ASGI/aiohttp: asyncio).",
           doc="the workers' runtime: `eventlet`, `gevent`, `asyncio`, `threading`; `auto`: "
               "the one the target needs"),
    Option("bind", str, short="-b", metavar="ADDR", multiple=True, field="binds",
           default=("127.0.0.1:5000",), shown_default="`127.0.0.1:5000`; `0.0.0.0:$PORT` when "
                                                      "`PORT` is set",
           help="Address to listen on: HOST:PORT, [IPV6]:PORT or unix:PATH; repeat for more "
                "(environment: space-separated).",
           doc="`HOST:PORT`, `[IPV6]:PORT` or `unix:PATH`; repeat for more"),
    Option("adapter", str, metavar="URL", check=adapter_url, worker=True,
           shown_default="none: relay through the master, one host only",
           help="URL of the broker that joins the workers and other hosts: redis://, "
                "rediss://, unix://, redis+sentinel://, valkey://, valkeys://, "
                "valkey+sentinel:// or amqp://, amqps://.",
           doc="the broker that joins workers and hosts: Redis `redis://`, `rediss://` (TLS), "
               "`unix://`, `redis+sentinel://`; Valkey `valkey://`, `valkeys://`, "
               "`valkey+sentinel://` (`pip install \"/path/to/sticky-cluster[valkey]\"`); "
               "RabbitMQ/AMQP `amqp://`, `amqps://` "
               "(`pip install \"/path/to/sticky-cluster[amqp]\"`) — see Adapters"),
    Option("channel", str, metavar="NAME", check=not_empty, worker=True, default="sticky-cluster",
           help="Pub/sub channel name of --adapter (the exchange, on AMQP); one per cluster "
                "sharing a broker.",
           doc="pub/sub channel of `--adapter` (the exchange, on AMQP); one per cluster sharing "
               "a broker; refused without `--adapter`"),
    Option("worker_connections", int, metavar="N", check=positive, worker=True, default=10_000,
           help="Most connections one worker serves at once (each websocket holds one). "
                "Threading workers refuse it: their limit is --threads.",
           doc="most connections a worker serves at once (each websocket holds one green "
               "thread; asyncio: uvicorn's `limit_concurrency`, and for aiohttp apps the "
               "worker's own check); one more gets a 503 once its request head is in; with "
               "several hosts, also the most client "
               "connections the host's forwarder serves (more get a 503). Threading workers "
               "refuse it: their limit is `--threads`"),
    Option("threads", int, metavar="N", check=positive, worker=True,
           shown_default="1000", help="Threading workers only: the threads that run "
           "requests in one worker (each websocket holds one for its life: the most clients "
           "a worker serves at once). Other worker classes refuse it.",
           doc="threading workers: the threads that run requests in one worker; each websocket "
               "holds one for its whole life, so this is the most clients a worker serves at "
               "once (all busy: the worker is full). Other worker classes refuse it"),
    Option("timeout", float, metavar="SECONDS", check=positive, default=30.0,
           help="Seconds without a heartbeat before a worker is killed.",
           doc="seconds without a heartbeat before a worker is killed and replaced"),
    Option("boot_timeout", float, metavar="SECONDS", check=positive, default=60.0,
           help="Seconds the app gets to load: in the start-up check (else the master exits "
                "with one line) and in each new worker (else it is killed and counts as a "
                "failed boot).",
           doc="seconds the app gets to load, in the start-up check and in each new worker; "
               "past it the check fails (the master exits) or the worker is killed and counts "
               "as a failed boot"),
    Option("graceful_timeout", float, metavar="SECONDS", check=not_negative, worker=True,
           default=30.0, help="Seconds a draining worker gets to finish its sessions.",
           doc="seconds a draining worker gets to finish its sessions"),
    Option("drain_spread", float, metavar="SECONDS", check=not_negative, worker=True,
           default=30.0,
           help="Seconds over which a draining worker closes the sessions still open at the "
                "graceful timeout, evenly, so that their clients do not all reconnect at once "
                "(0: all at once).",
           doc="seconds over which a draining worker closes the sessions still open at "
               "`--graceful-timeout`, evenly, so their clients do not all reconnect in the "
               "same second (`0`: at once)"),
    Option("roll_after", str, metavar="WHEN", choices=ROLL_STEPS, default="ready",
           help="When a rolling restart moves on to the next worker: once the new one is "
                "ready (ready) or once the old one has drained and exited too (drained: the "
                "clients of one worker reconnect at a time).",
           doc="when a rolling restart (`HUP`) moves on to the next worker: once the new one is "
               "ready (`ready`), or once the old one has also drained and exited (`drained`: "
               "the clients of one worker at a time reconnect; see Draining)"),
    Option("max_worker_memory", int, metavar="MB", check=positive, shown_default="off",
           help="Recycle a worker whose resident memory passes this many MB (less a jitter): "
                "a new worker starts, then the old one drains.",
           doc="recycle a worker whose resident memory passes this many MB, less its jitter: "
               "a new worker first, then the old one drains (see Recycling)"),
    Option("max_worker_memory_jitter", int, metavar="MB", check=not_negative,
           shown_default="a tenth of `--max-worker-memory`",
           help="Each worker's memory limit is --max-worker-memory less a random 0 to this "
                "many MB, so that workers are not recycled together.",
           doc="each worker's memory limit is `--max-worker-memory` less a random 0 to this "
               "many MB"),
    Option("max_worker_age", float, metavar="SECONDS", check=positive, shown_default="off",
           help="Recycle a worker once it has served this many seconds (plus a jitter): a new "
                "worker starts, then the old one drains.",
           doc="recycle a worker after this many seconds, plus its jitter: a new worker first, "
               "then the old one drains"),
    Option("max_worker_age_jitter", float, metavar="SECONDS", check=not_negative,
           shown_default="a tenth of `--max-worker-age`",
           help="Each worker's age limit is --max-worker-age plus a random 0 to this many "
                "seconds, so that workers started together are not recycled together.",
           doc="each worker's age limit is `--max-worker-age` plus a random 0 to this many "
               "seconds"),
    Option("log_level", str, metavar="LEVEL", choices=LOG_LEVELS, default="info",
           help="Log level.", doc="`debug`, `info`, `warning`, `error`, `critical`"),
    Option("log_file", str, metavar="PATH", shown_default="standard error",
           help="Log to this file instead of standard error (reopened on SIGUSR1).",
           doc="log file, reopened on `SIGUSR1`"),
    Option("pid_file", str, flag="--pid", metavar="FILE", shown_default="none",
           help="Write the master's pid to this file while it runs.",
           doc="pid file, written at start, locked while the master runs, removed at exit"),
    Option("route", str, metavar="MODE", choices=ROUTES, default="sid",
           help="sid: a request that names its session goes to the worker that owns it, "
                "others are placed by --balance (peeks at each request line); ip: by client "
                "IP only, handed off at accept.",
           doc="`sid`: by session id, per request; new sessions by `--balance`; `ip`: by "
               "client IP only (see Routing)"),
    Option("balance", str, metavar="MODE", choices=BALANCES, default="least-loaded",
           help="With --route sid, where a request without a session goes: least-loaded "
                "(fewest sessions), ip (hash of the client IP) or random.",
           doc="where a new session goes with `--route sid`: `least-loaded`, `ip` (hash of the "
               "client IP) or `random` (see Routing)"),
    Option("overload", str, metavar="MODE", choices=OVERLOADS, default="refuse",
           help="While every worker is late or full: refuse (answer a new Engine.IO session "
                "503 at once, its client tries again later) or queue (place it anyway).",
           doc="while every worker is late or full, a new Engine.IO session is answered `503` "
               "(`refuse`: its client tries again later) or placed anyway (`queue`) (see Routing)"),
    Option("proxy_protocol", bool, default=False, shown_default="off",
           help="Every connection starts with a PROXY protocol v1/v2 header (HAProxy "
                "send-proxy, nginx proxy_protocol): its client address is the real one. "
                "Connections without a valid header are closed.",
           doc="connections start with a PROXY v1/v2 header naming the real client"),
    Option("forwarded_allow_ips", str, metavar="ADDR|CIDR,...", check=trusted_proxies,
           default="", shown_default="none", worker=True,
           help="Peers whose X-Forwarded-For (the real client), X-Forwarded-Proto and "
                "X-Forwarded-Host (the scheme and host the app sees) are believed (* for any).",
           doc="peers (addresses/CIDRs, `*`) whose `X-Forwarded-For`, `-Proto` and `-Host` are "
               "believed"),
    Option("peek_timeout", float, metavar="SECONDS", check=positive, default=5.0,
           help="Seconds a new connection gets to send its request line (and PROXY header); "
                "then it goes by IP (closed if its PROXY header is missing).",
           doc="seconds a new connection gets to send its request line before it goes by IP"),
    Option("umask", str, metavar="OCTAL", check=file_mode_mask, shown_default="inherited",
           help="File mode creation mask of the master and workers, in octal (027).",
           doc="file mode creation mask of the master and workers (`027`)"),
    Option("user", str, metavar="NAME|UID", shown_default="the master's user",
           help="Run the workers as this user (the master, started as root, binds the "
                "ports and keeps the pid file).",
           doc="run the workers as this user (the master, started as root, keeps root; "
               "see Security)"),
    Option("group", str, metavar="NAME|GID", shown_default="the user's group",
           help="Run the workers with this group.", doc="run the workers with this group"),
    Option("status_bind", str, metavar="ADDR", shown_default="off",
           help="Serve the status HTTP endpoint at HOST:PORT or unix:PATH: /metrics "
                "(Prometheus), /healthz, /status (JSON) and a live page at /.",
           doc="`HOST:PORT` or `unix:PATH` of the status endpoint: `/metrics`, `/healthz`, "
               "`/status`, live page `/` (see Operating it)"),
    Option("control", str, metavar="PATH", shown_default="`PID_FILE.ctl` with `--pid`, else none",
           help="The control socket for status, scale, reload and stop (mode 0600).",
           doc="the control socket (mode 0600) for `status`, `scale`, `reload`, `stop`"),
    Option("access_log", str, metavar="PATH|-", worker=True, shown_default="off",
           help="Write one line per request and per websocket session to this file "
                "(- for standard output), from the worker that served it.",
           doc="one line per HTTP request and per websocket session, written by the worker "
               "(`-`: standard output)"),
    Option("access_log_format", str, metavar="FORMAT", check=access_log_format, worker=True,
           default=DEFAULT_ACCESS_LOG_FORMAT,
           shown_default="gunicorn's, then `slot=… transport=… seconds`",
           help="gunicorn-style atoms: %(h)s %(r)s %(s)s %(b)s %(a)s %(L)s ..., plus %(slot)s "
                "and %(transport)s.",
           doc="gunicorn atoms (`%(h)s %(r)s %(s)s %(b)s %(a)s %(L)s` …) plus `%(slot)s` and "
               "`%(transport)s`"),
    Option("log_format", str, metavar="FORMAT", choices=LOG_FORMATS, default="text",
           help="text: one readable line per event (a traceback on the indented lines below "
                "it); json: one JSON object per line.",
           doc="`text` or `json` (one JSON object per line: time, pid, level, logger, message, "
               "and `exc_info` with a traceback)"),
    Option("check", bool, default=False, shown_default="off", setting=False,
           help="Check the options, load TARGET, reach the adapter and see that the log and "
                "pid files can be written, then exit: 0 when all is well, else one line and 1.",
           doc="check the options, load the target, reach the adapter and see that the log and "
               "pid files can be written, then exit 0, or 1 with one line"),
    Option("header_timeout", float, metavar="SECONDS", check=positive, worker=True, default=60.0,
           help="Seconds a worker gives a connection to send its request line and headers "
                "(also each read/write of a plain HTTP request); then it closes it.",
           doc="seconds a worker gives a connection to send its request line and headers (and "
               "each read or write of a plain HTTP request); then it closes it"),
    Option("keepalive_timeout", float, metavar="SECONDS", check=positive, worker=True,
           default=75.0,
           help="Seconds a worker keeps an idle keep-alive connection open for its next "
                "request (websockets are not timed: Engine.IO pings them).",
           doc="seconds a worker keeps an idle keep-alive connection open for its next request"),
    Option("websocket_rate", float, metavar="BYTES", check=positive, worker=True,
           default=16_000_000.0,
           help="Bytes per second one websocket may send to its worker on average (each "
                "frame counts 16 KB more: about 1,000 messages/s); past it the worker reads it "
                "more slowly.",
           doc="bytes per second one websocket may send to its worker on average (each frame "
               "counts 16 KB more: about 1,000 messages/s); past it the worker reads that "
               "socket more slowly"),
    Option("websocket_deflate", bool, default=False, shown_default="off", worker=True,
           help="Grant permessage-deflate to websocket clients that offer it (browsers do): "
                "smaller frames, but a compressor and an inflater kept per client (an "
                "eventlet worker: ~100 KB more per browser client).",
           doc="grant permessage-deflate to websocket clients that offer it (every browser "
               "does): smaller frames, for a compressor and an inflater kept per client and "
               "each message compressed once per recipient (see Limits and timeouts, memory)"),

    Option("config", str, short="-c", metavar="PATH", setting=False, shown_default="none",
           help="A Python file of settings and hooks, as gunicorn.conf.py: module-level names "
                "are these options' keywords (workers = 4), functions named on_starting, "
                "when_ready, pre_fork, post_fork, worker_exit, on_reload or on_exit are hooks. "
                "The command line and the environment win over it.",
           doc="a Python file of options and hooks, as `gunicorn.conf.py` (see Config file)"),
    Option("print_config", bool, default=False, shown_default="off", setting=False,
           help="Print every option's value and where it comes from (command line, "
                "environment, config file, default), then exit.",
           doc="print every option's value and where it comes from, then exit"),
    Option("hook_timeout", float, metavar="SECONDS", check=positive, default=10.0,
           help="Seconds a config-file hook may run; then it is interrupted and logged "
                "(the master waits while a hook runs).",
           doc="seconds a hook may run before it is interrupted (see Config file)"),
    Option("reload", bool, default=False, shown_default="off",
           help="Development: watch the app's Python files and roll the workers, one slot at "
                "a time, when one changes (a change that does not import keeps the old ones).",
           doc="development: roll the workers when the app's Python files change (see Reload)"),
    Option("reload_dir", str, metavar="PATH", multiple=True, field="reload_dirs", default=(),
           check=existing_paths, shown_default="none",
           help="With --reload, watch this directory or file too; repeat for more "
                "(environment: space-separated).",
           doc="with `--reload`, watch this path too; repeat for more"),
    Option("proxy_allow_from", str, metavar="ADDR|CIDR,...", check=trusted_proxies,
           default="127.0.0.0/8,::1", shown_default="loopback: `127.0.0.0/8,::1`",
           help="With --proxy-protocol, the peers whose PROXY header is believed (* for "
                "any); a header from any other peer closes the connection.",
           doc="with `--proxy-protocol`, peers (addresses/CIDRs, `*`) whose PROXY header is "
               "believed; any other is refused"),
    Option("host_id", int, metavar="N", check=host_id,
           shown_default="one host: none; with `--adapter`, the first free one",
           help="Several hosts: this host's id, 1 to 4095, in every sid it makes. With a "
                "Redis-family --adapter, claimed in its directory of hosts (none: the first "
                "free id); with --peers, required.",
           doc="several hosts: this host's id (1 to 4095), carried by every sid it makes; "
               "claimed in the adapter's directory of hosts (none given: the first free one), "
               "required with `--peers` (see Several hosts)"),
    Option("advertise", str, metavar="HOST:PORT", check=advertise,
           shown_default="the `--bind` address, when it is a specific IP",
           help="Several hosts: the address the other masters reach this one at (a pod IP, "
                "a private address); published in the directory of hosts.",
           doc="several hosts: the address other masters reach this one at, published in "
               "the directory of hosts (see Several hosts)"),
    Option("peers", str, metavar="ID=HOST:PORT,...", check=peers, default="",
           shown_default="none",
           help="Several hosts without a Redis-family --adapter (AMQP, the embedded relay): "
                "every host's id and address, the same list on every host.",
           doc="several hosts without a Redis-family adapter: the static directory of hosts, "
               "`ID=HOST:PORT` for each (see Several hosts)"),
)
"""Every option of ``sticky-cluster run``, in the order ``--help`` and docs/options.md list them."""

BY_NAME: dict[str, Option] = {option.name: option for option in OPTIONS}
"""The options by keyword."""

SETTINGS: tuple[Option, ...] = tuple(option for option in OPTIONS if option.setting)
"""The options that are :class:`cluster.setup.config.Settings` fields."""


def default(name: str) -> Any:
    """The default of the option called ``name`` (computed now for ``workers``)."""
    option = BY_NAME[name]
    return option.default_factory() if option.default_factory else option.default


def worker_options(settings: object) -> dict[str, object]:
    """The worker-side options' values in ``settings``, by WorkerSpec field name."""
    return {option.name: getattr(settings, option.settings_field)
            for option in OPTIONS if option.worker}


TABLE_HEADER = "| option | default | meaning |\n| --- | --- | --- |"


def markdown_table() -> str:
    """The options table of docs/options.md, header included, one line per option."""
    return "\n".join([TABLE_HEADER, *(option.docs_row() for option in OPTIONS)])


def support_table() -> str:
    """docs/runtimes.md's table of what each runtime enforces
    (:mod:`cluster.protocol.support`), a row per worker-side option in this table's order."""
    return support.markdown_table({option.name: option.long_flag
                                   for option in OPTIONS if option.worker})


DOCS_TABLES: dict[str, tuple[str, Callable[[], str]]] = {
    "options.md": (TABLE_HEADER, markdown_table),
    "runtimes.md": (support.TABLE_ANCHOR, support_table),
}
"""The pages of docs/ that hold a table made here -> (how the table begins, what makes it)."""


def replace_table(text: str, page: str) -> str:
    """``text``, the page ``page`` of docs/ (a key of :data:`DOCS_TABLES`), with its table
    replaced by the one made now."""
    anchor, make = DOCS_TABLES[page]
    return _replace(text, anchor, make())


def _replace(text: str, anchor: str, table: str) -> str:
    """``text`` with the markdown table whose first line starts with ``anchor`` replaced by
    ``table``."""
    start = text.index("\n" + anchor) + 1
    end = start
    while end < len(text) and text.startswith("|", end):
        end = text.find("\n", end) + 1 or len(text)
    return text[:start] + table + "\n" + text[end:]


def main(argv: list[str] | None = None) -> int:
    """Print the options table and the runtimes' table, or rewrite them in place in
    docs/options.md and docs/runtimes.md (``make docs-tables``)."""
    parser = argparse.ArgumentParser(prog="cluster.setup.options.main",
                                     description=main.__doc__)
    parser.add_argument("--docs", metavar="DIR",
                        help="rewrite the tables of DIR/options.md and DIR/runtimes.md")
    args = parser.parse_args(argv)
    if args.docs:
        texts = {}
        for page in DOCS_TABLES:  # every page made before any is written: all or none
            path = os.path.join(args.docs, page)
            with open(path, encoding="utf-8") as file:
                texts[path] = replace_table(file.read(), page)
        for path, text in texts.items():
            with open(path, "w", encoding="utf-8") as file:
                file.write(text)
    else:
        sys.stdout.write(markdown_table() + "\n\n" + support_table() + "\n")
    return 0
