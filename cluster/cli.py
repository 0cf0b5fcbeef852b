"""The ``sticky-cluster`` command line (click)."""
from __future__ import annotations

from typing import Callable

import click

from . import control, control_client
from .config import BALANCES, LOG_FORMATS, LOG_LEVELS, ROUTES, WORKER_CLASSES, ConfigError
from .logs import escape
from .master import ClusterError, Master
from .pidfile import PidFileError


def _env(name: str) -> str:
    return f"STICKY_CLUSTER_{name}"


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="sticky-cluster", prog_name="sticky-cluster")
def main() -> None:
    """Run a python-socketio app on several worker processes, each client always on the same one.

    \b
    Example:
      sticky-cluster run app:sio --workers 4 --bind 0.0.0.0:5000 --pid /run/app.pid
      sticky-cluster run app:sio -w 8 --adapter redis://localhost:6379/0
      sticky-cluster reload --pid /run/app.pid     (also: stop, scale N, status)
      sticky-cluster run app:sio --status-bind 127.0.0.1:9100   (/metrics, /healthz, /)
    """


@main.command()
@click.argument("target", envvar=_env("TARGET"))
@click.option("-w", "--workers", type=int, envvar=_env("WORKERS"), show_envvar=True,
              help="Worker processes.  [default: the CPU count]")
@click.option("-b", "--bind", multiple=True, envvar=_env("BIND"), show_envvar=True,
              help="Address to listen on: HOST:PORT, [IPV6]:PORT or unix:PATH; repeat for more "
                   "(environment: space-separated).  [default: 127.0.0.1:5000]")
@click.option("--adapter", envvar=_env("ADAPTER"), show_envvar=True,
              help="URL of the broker that joins the workers and other hosts: redis://, "
                   "rediss://, unix://, redis+sentinel://, valkey://, valkeys://, "
                   "valkey+sentinel:// or amqp://, amqps://.  "
                   "[default: relay through the master, one host only]")
@click.option("--channel", envvar=_env("CHANNEL"), show_envvar=True, default="sticky-cluster",
              show_default=True, help="Pub/sub channel name (the exchange, on AMQP); one per cluster sharing a broker.")
@click.option("--worker-connections", type=int, envvar=_env("WORKER_CONNECTIONS"),
              show_envvar=True, default=10_000, show_default=True,
              help="Most connections one worker serves at once (each websocket holds one).")
@click.option("--timeout", type=float, envvar=_env("TIMEOUT"), show_envvar=True, default=30.0,
              show_default=True, help="Seconds without a heartbeat before a worker is killed.")
@click.option("--graceful-timeout", type=float, envvar=_env("GRACEFUL_TIMEOUT"),
              show_envvar=True, default=30.0, show_default=True,
              help="Seconds a draining worker gets to finish its sessions.")
@click.option("--log-level", type=click.Choice(LOG_LEVELS, case_sensitive=False),
              envvar=_env("LOG_LEVEL"), show_envvar=True, default="info", show_default=True,
              help="Log level.")
@click.option("--log-file", envvar=_env("LOG_FILE"), show_envvar=True,
              help="Log to this file instead of standard error (reopened on SIGUSR1).")
@click.option("--pid", "pid_file", envvar=_env("PID"), show_envvar=True,
              help="Write the master's pid to this file while it runs.")
@click.option("--route", type=click.Choice(ROUTES, case_sensitive=False), envvar=_env("ROUTE"),
              show_envvar=True, default="sid", show_default=True,
              help="sid: a request that names its session goes to the worker that owns it, "
                   "others are placed by --balance (peeks at each request line); ip: by client "
                   "IP only, handed off at accept.")
@click.option("--balance", type=click.Choice(BALANCES, case_sensitive=False),
              envvar=_env("BALANCE"), show_envvar=True, default="least-loaded", show_default=True,
              help="With --route sid, where a request without a session goes: least-loaded "
                   "(fewest sessions), ip (hash of the client IP) or random.")
@click.option("--proxy-protocol", is_flag=True, envvar=_env("PROXY_PROTOCOL"), show_envvar=True,
              help="Every connection starts with a PROXY protocol v1/v2 header (HAProxy "
                   "send-proxy, nginx proxy_protocol): its client address is the real one. "
                   "Connections without a valid header are closed.")
@click.option("--forwarded-allow-ips", envvar=_env("FORWARDED_ALLOW_IPS"), show_envvar=True,
              default="", metavar="ADDR|CIDR,...",
              help="Peers whose X-Forwarded-For header names the real client (* for any).  "
                   "[default: none]")
@click.option("--peek-timeout", type=float, envvar=_env("PEEK_TIMEOUT"), show_envvar=True,
              default=5.0, show_default=True,
              help="Seconds a new connection gets to send its request line (and PROXY header); "
                   "then it goes by IP (closed if its PROXY header is missing).")
@click.option("--umask", envvar=_env("UMASK"), show_envvar=True, metavar="OCTAL",
              help="File mode creation mask of the master and workers, in octal (027).  "
                   "[default: inherited]")
@click.option("--user", envvar=_env("USER"), show_envvar=True, metavar="NAME|UID",
              help="Run the workers as this user (the master, started as root, binds the "
                   "ports and keeps the pid file).  [default: the master's user]")
@click.option("--group", envvar=_env("GROUP"), show_envvar=True, metavar="NAME|GID",
              help="Run the workers with this group.  [default: the user's group]")
@click.option("--status-bind", envvar=_env("STATUS_BIND"), show_envvar=True, metavar="ADDR",
              help="Serve the status HTTP endpoint at HOST:PORT or unix:PATH: /metrics "
                   "(Prometheus), /healthz, /status (JSON) and a live page at /.  [default: off]")
@click.option("--control", envvar=_env("CONTROL"), show_envvar=True, metavar="PATH",
              help="The control socket for status, scale, reload and stop (mode 0600).  "
                   "[default: PID_FILE.ctl with --pid, else none]")
@click.option("--access-log", envvar=_env("ACCESS_LOG"), show_envvar=True, metavar="PATH|-",
              help="Write one line per request and per websocket session to this file "
                   "(- for standard output), from the worker that served it.  [default: off]")
@click.option("--access-log-format", envvar=_env("ACCESS_LOG_FORMAT"), show_envvar=True,
              metavar="FORMAT", help="gunicorn-style atoms: %(h)s %(r)s %(s)s %(b)s %(a)s "
                                     "%(L)s ..., plus %(slot)s and %(transport)s.  "
                                     "[default: gunicorn's, then slot, transport, seconds]")
@click.option("--log-format", type=click.Choice(LOG_FORMATS, case_sensitive=False),
              envvar=_env("LOG_FORMAT"), show_envvar=True, default="text", show_default=True,
              help="text: one readable line per event; json: one JSON object per line.")
@click.option("--check", is_flag=True, envvar=_env("CHECK"), show_envvar=True,
              help="Check the options, load TARGET (and reach the adapter), then exit: "
                   "0 when all is well, else one line and 1.")
@click.option("--header-timeout", type=float, envvar=_env("HEADER_TIMEOUT"), show_envvar=True,
              default=60.0, show_default=True,
              help="Seconds a worker gives a connection to send its request line and headers "
                   "(also each read/write of a plain HTTP request); then it closes it.")
@click.option("--keepalive-timeout", type=float, envvar=_env("KEEPALIVE_TIMEOUT"),
              show_envvar=True, default=75.0, show_default=True,
              help="Seconds a worker keeps an idle keep-alive connection open for its next "
                   "request (websockets are not timed: Engine.IO pings them).")
@click.option("--websocket-rate", type=float, envvar=_env("WEBSOCKET_RATE"), show_envvar=True,
              default=16_000_000, show_default=True, metavar="BYTES",
              help="Bytes per second one websocket may send to its worker on average (each "
                   "frame counts 16 KB more: about 1,000 messages/s); past it the worker reads it more slowly.")
@click.option("-k", "--worker-class", type=click.Choice(WORKER_CLASSES, case_sensitive=False),
              envvar=_env("WORKER_CLASS"), show_envvar=True, default="auto", show_default=True,
              help="The workers' runtime: eventlet, gevent or asyncio; auto takes the one the "
                   "app needs (Server(async_mode=...), AsyncServer/ASGI/aiohttp: asyncio).")
def run(target: str, bind: tuple[str, ...], log_level: str, route: str, balance: str,
        worker_class: str, log_format: str, check: bool, **options: object) -> None:
    """Serve TARGET, a python-socketio app: MODULE:ATTR or MODULE:FACTORY().

    TARGET names a socketio.Server, a socketio.WSGIApp or a Flask app that uses
    Flask-SocketIO (eventlet or gevent), or a socketio.AsyncServer, a socketio.ASGIApp, a
    FastAPI/Starlette app with a socketio.ASGIApp mounted or an aiohttp Application with an
    AsyncServer attached (asyncio). The master accepts every connection and hands it to a worker: the
    one that owns the session the request names, else the one --balance places it on
    (by default the least loaded), so Engine.IO long-polling and the websocket upgrade always meet the same process.
    """
    try:
        master = Master(target, bind=list(bind) or None, log_level=log_level.lower(),
                        route=route.lower(), balance=balance.lower(),
                        worker_class=worker_class.lower(),
                        log_format=log_format.lower(),
                        **options)  # type: ignore[arg-type]
        if check:
            master.check()
            click.echo(f"ok: {target} loads and the options are valid")
            return
        master.run()
    except (ConfigError, ClusterError) as exc:
        raise click.ClickException(escape(str(exc))) from None


def _pid_option(command: Callable) -> Callable:
    command = click.option("--control", "control_path", envvar=_env("CONTROL"), show_envvar=True,
                           metavar="PATH", help="The master's control socket (run --control).  "
                                                "[default: PID_FILE.ctl]")(command)
    return click.option("--pid", "pid_file", envvar=_env("PID"), show_envvar=True,
                        help="The pid file the master was started with (run --pid).")(command)


def _control(pid_file: str | None, control_path: str | None, words: list[str],
             by_signal: Callable[[str], str]) -> None:
    """Ask the master through its control socket if it has one, else by signal."""
    path = control_path or (f"{pid_file}.ctl" if pid_file else None)
    try:
        if control_client.available(path):
            try:
                click.echo(control_client.request(path, words))  # type: ignore[arg-type]
                return
            except control_client.ControlUnreachable:
                if not pid_file:
                    raise  # else a socket left by a dead master: the pid file says more
        if pid_file:
            click.echo(by_signal(pid_file))
        elif control_path:
            raise click.ClickException(f"no control socket at {control_path}: is the master "
                                       "running with this --control?")
        else:
            raise click.ClickException("say which master: --pid FILE or --control PATH")
    except PidFileError as exc:
        raise click.ClickException(str(exc)) from None


@main.command()
@_pid_option
def reload(pid_file: str | None, control_path: str | None) -> None:
    """Rolling restart of a running master's workers.

    Through the control socket, it returns when the roll is done (or aborted, with the
    reason); without one, it sends SIGHUP and returns at once.
    """
    _control(pid_file, control_path, ["reload"], control.reload)


@main.command()
@click.option("--graceful", is_flag=True,
              help="Drain the workers first, up to --graceful-timeout (SIGQUIT); "
                   "without it, stop at once (SIGTERM).")
@_pid_option
def stop(pid_file: str | None, control_path: str | None, graceful: bool) -> None:
    """Stop a running master and its workers (through the control socket: wait until it exited)."""
    _control(pid_file, control_path, ["stop", "graceful"] if graceful else ["stop"],
             lambda pid: control.stop(pid, graceful))


@main.command()
@click.argument("workers", type=click.IntRange(min=1))
@_pid_option
def scale(pid_file: str | None, control_path: str | None, workers: int) -> None:
    """Run WORKERS worker processes from now on.

    Through the control socket, in one step, returning when all of them serve; without
    one, by SIGTTIN / SIGTTOU, one per step.
    """
    _control(pid_file, control_path, ["scale", str(workers)],
             lambda pid: control.scale(pid, workers))


@main.command()
@_pid_option
def status(pid_file: str | None, control_path: str | None) -> None:
    """Show a running master's workers, slot by slot."""
    _control(pid_file, control_path, ["status"], control.status)


if __name__ == "__main__":  # pragma: no cover
    main()
