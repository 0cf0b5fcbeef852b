"""The ``sticky-cluster`` command line (click)."""
from __future__ import annotations

from typing import Callable

import click

from . import control
from .config import LOG_LEVELS, ROUTES, WORKER_CLASSES, ConfigError
from .master import ClusterError, Master
from .pidfile import PidFileError


def _env(name: str) -> str:
    return f"STICKY_CLUSTER_{name}"


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
def main() -> None:
    """Run a python-socketio app on several worker processes, each client always on the same one.

    \b
    Example:
      sticky-cluster run app:sio --workers 4 --bind 0.0.0.0:5000 --pid /run/app.pid
      sticky-cluster run app:sio -w 8 --adapter redis://localhost:6379/0
      sticky-cluster reload --pid /run/app.pid     (also: stop, scale N, status)
    """


@main.command()
@click.argument("target", envvar=_env("TARGET"))
@click.option("-w", "--workers", type=int, envvar=_env("WORKERS"), show_envvar=True,
              help="Worker processes.  [default: the CPU count]")
@click.option("-b", "--bind", multiple=True, envvar=_env("BIND"), show_envvar=True,
              help="Address to listen on: HOST:PORT, [IPV6]:PORT or unix:PATH; repeat for more "
                   "(environment: space-separated).  [default: 127.0.0.1:5000]")
@click.option("--adapter", envvar=_env("ADAPTER"), show_envvar=True,
              help="redis://, rediss:// or unix:// URL of the Redis server that joins the workers "
                   "and other hosts.  [default: relay through the master, one host only]")
@click.option("--channel", envvar=_env("CHANNEL"), show_envvar=True, default="sticky-cluster",
              show_default=True, help="Pub/sub channel name; one per cluster sharing a Redis.")
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
                   "others by client IP (peeks at each request line); ip: by client IP only, "
                   "handed off at accept.")
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
@click.option("-k", "--worker-class", type=click.Choice(WORKER_CLASSES, case_sensitive=False),
              envvar=_env("WORKER_CLASS"), show_envvar=True, default="auto", show_default=True,
              help="The workers' runtime: eventlet, gevent or asyncio; auto takes the one the "
                   "app needs (Server(async_mode=...), AsyncServer/ASGI/aiohttp: asyncio).")
def run(target: str, bind: tuple[str, ...], log_level: str, route: str, worker_class: str,
        **options: object) -> None:
    """Serve TARGET, a python-socketio app: MODULE:ATTR or MODULE:FACTORY().

    TARGET names a socketio.Server, a socketio.WSGIApp or a Flask app that uses
    Flask-SocketIO (eventlet or gevent), or a socketio.AsyncServer, a socketio.ASGIApp, a
    FastAPI/Starlette app with a socketio.ASGIApp mounted or an aiohttp Application with an
    AsyncServer attached (asyncio). The master accepts every connection and hands it to a worker: the
    one that owns the session the request names, else the one the client's IP hashes
    to, so Engine.IO long-polling and the websocket upgrade always meet the same process.
    """
    try:
        master = Master(target, bind=list(bind) or None, log_level=log_level.lower(),
                        route=route.lower(), worker_class=worker_class.lower(),
                        **options)  # type: ignore[arg-type]
        master.run()
    except (ConfigError, ClusterError) as exc:
        raise click.ClickException(str(exc)) from None


def _pid_option(command: Callable) -> Callable:
    return click.option("--pid", "pid_file", envvar=_env("PID"), show_envvar=True, required=True,
                        help="The pid file the master was started with (run --pid).")(command)


def _control(action: Callable[[], str]) -> None:
    try:
        click.echo(action())
    except PidFileError as exc:
        raise click.ClickException(str(exc)) from None


@main.command()
@_pid_option
def reload(pid_file: str) -> None:
    """Rolling restart of a running master's workers (SIGHUP)."""
    _control(lambda: control.reload(pid_file))


@main.command()
@click.option("--graceful", is_flag=True,
              help="Drain the workers first, up to --graceful-timeout (SIGQUIT); "
                   "without it, stop at once (SIGTERM).")
@_pid_option
def stop(pid_file: str, graceful: bool) -> None:
    """Stop a running master and its workers."""
    _control(lambda: control.stop(pid_file, graceful))


@main.command()
@click.argument("workers", type=click.IntRange(min=1))
@_pid_option
def scale(pid_file: str, workers: int) -> None:
    """Run WORKERS worker processes from now on (SIGTTIN / SIGTTOU, one per step)."""
    _control(lambda: control.scale(pid_file, workers))


@main.command()
@_pid_option
def status(pid_file: str) -> None:
    """Show a running master's workers, slot by slot."""
    _control(lambda: control.status(pid_file))


if __name__ == "__main__":  # pragma: no cover
    main()
