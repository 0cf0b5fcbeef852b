"""The ``sticky-cluster`` command line (click).

``run``'s options are made from the table in :mod:`cluster.setup.options`; none is written here.
"""
from __future__ import annotations

from typing import Callable

import click
from click.core import ParameterSource

from cluster.hosts import balancer as balancer_config
from cluster.master import ClusterError, Master
from cluster.ops.pidfile import PidFileError
from cluster.protocol.adapters import redact_text
from cluster.setup import config_file
from cluster.setup.config import ConfigError, make_settings
from cluster.setup.logs import escape
from cluster.setup.options import BY_NAME, OPTIONS, Option, env_name

from . import control, control_client
from .directory_source import DirectoryUnavailable, directory_of


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="sticky-cluster", prog_name="sticky-cluster")
def main() -> None:
    """Run a python-socketio app on several worker processes, each client always on the same one.

    \b
    Example:
      sticky-cluster run app:sio --workers 4 --bind 0.0.0.0:5000 --pid /run/app.pid
      sticky-cluster run app:sio -w 8 --adapter redis://localhost:6379/0
      sticky-cluster reload --pid /run/app.pid     (also: stop, scale N, status)
      sticky-cluster run app:sio --status-bind 127.0.0.1:9191   (/metrics, /healthz, /)
      sticky-cluster balancer nginx --adapter redis://10.0.0.5:6379/0   (several hosts)
    """


def _click_option(option: Option) -> Callable[[Callable], Callable]:
    """The click option of one row of :data:`cluster.setup.options.OPTIONS`."""
    flags = [flag for flag in (option.short, option.long_flag) if flag]
    if option.kind is bool:
        kind: dict[str, object] = {"is_flag": True}
    elif option.choices:
        kind = {"type": click.Choice(option.choices, case_sensitive=False)}
    else:
        kind = {"type": option.kind, "metavar": option.metavar}
    return click.option(*flags, option.name, envvar=option.env, show_envvar=True,
                        multiple=option.multiple, help=option.help_text(), **kind)


def _table_options(command: Callable) -> Callable:
    """Every option of the table, in its order (click lists the last decorator first)."""
    for option in reversed(OPTIONS):
        command = _click_option(option)(command)
    return command


@main.command()
@click.argument("target", envvar=env_name("TARGET"))
@_table_options
@click.pass_context
def run(ctx: click.Context, target: str, check: bool, config: str | None, print_config: bool,
        **options: object) -> None:
    """Serve TARGET, a python-socketio app: MODULE:ATTR or MODULE:FACTORY().

    TARGET names a socketio.Server, a socketio.WSGIApp or a Flask app that uses
    Flask-SocketIO (eventlet or gevent), or a socketio.AsyncServer, a socketio.ASGIApp, a
    FastAPI/Starlette app with a socketio.ASGIApp mounted or an aiohttp Application with an
    AsyncServer attached (asyncio). The master accepts every connection and hands it to a worker: the
    one that owns the session the request names, else the one --balance places it on
    (by default the least loaded), so Engine.IO long-polling and the websocket upgrade always meet the same process.
    """
    try:
        file = config_file.load(config) if config else None
        merged = config_file.merge(_sources(ctx, options), file)
        values = {name: value for name, (value, _source) in merged.items()}
        if print_config:
            make_settings(target, **values)  # the same checks as a start
            click.echo(config_file.report(merged, file))
            return
        master = Master(target, hooks=file.hooks if file else None, **values)
        if check:
            master.check()
            click.echo(f"ok: {target} loads and the options are valid")
            return
        master.run()
    except (ConfigError, ClusterError) as exc:
        raise click.ClickException(escape(redact_text(str(exc)))) from None


def _sources(ctx: click.Context, options: dict[str, object]) -> dict[str, tuple[object, str]]:
    """The options given on the command line or in the environment: (value, source)."""
    given = {}
    for name, value in options.items():
        source = ctx.get_parameter_source(name)
        if source is ParameterSource.COMMANDLINE:
            given[name] = (_given(BY_NAME[name], value), "command line")
        elif source is ParameterSource.ENVIRONMENT:
            given[name] = (_given(BY_NAME[name], value), f"environment {BY_NAME[name].env}")
    return given


def _given(option: Option, value: object) -> object:
    """A value from click as Master takes it: None when not given, choices in lower case."""
    if option.multiple:
        return list(value) or None  # type: ignore[call-overload]
    if option.choices and isinstance(value, str):
        return value.lower()
    return value


def _pid_option(command: Callable) -> Callable:
    command = click.option("--control", "control_path", envvar=BY_NAME["control"].env,
                           show_envvar=True,
                           metavar="PATH", help="The master's control socket (run --control).  "
                                                "[default: PID_FILE.ctl]")(command)
    return click.option("--pid", "pid_file", envvar=BY_NAME["pid_file"].env, show_envvar=True,
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
              help="Drain the workers first, up to --graceful-timeout and --drain-spread "
                   "(SIGTERM); without it, stop at once (SIGINT).")
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


@main.command()
@click.argument("kind", metavar="nginx|haproxy")
@click.option("--adapter", envvar=BY_NAME["adapter"].env, show_envvar=True, metavar="URL",
              help="The masters' Redis-family adapter: the directory of hosts is read there.")
@click.option("--channel", envvar=BY_NAME["channel"].env, show_envvar=True, metavar="NAME",
              default=BY_NAME["channel"].default, show_default=True,
              help="The masters' --channel.")
@click.option("--peers", envvar=env_name("--peers"), show_envvar=True,
              metavar="ID=HOST:PORT,…", help="The hosts, as the masters' --peers (instead of "
                                             "reading the directory from --adapter).")
@click.option("--listen", default="80", show_default=True, metavar="[HOST:]PORT",
              help="Where the balancer listens.")
@click.option("--balance", "placement", default="round-robin", show_default=True,
              metavar="|".join(balancer_config.BALANCES),
              help="How new sessions (requests without a sid) are placed over the hosts.")
@click.option("--full", is_flag=True,
              help="nginx: a whole nginx.conf, not a snippet for inside http { }.")
@click.option("--keepalive/--no-keepalive", default=True, show_default=True,
              help="Reuse connections to the hosts for any client's requests; without: one "
                   "per client connection, so that the X-Forwarded-For the app reads per "
                   "connection is one client's.")
def balancer(kind: str, adapter: str | None, channel: str, peers: str | None, listen: str,
             placement: str, full: bool, keepalive: bool) -> None:
    """Print an nginx or HAProxy configuration that sends each request to its session's host.

    A request's sid names its host in its first two characters: the configuration routes
    it there straight, so no master has to forward it, and places new sessions over every
    host. The hosts come from the directory the masters keep in --adapter (read now: run
    it again when hosts come and go) or from --peers.
    """
    try:
        where = balancer_config.parse_listen(listen)
        balancer_config.check(kind, placement)  # before reading the directory
        hosts = directory_of(adapter, channel, peers)
        click.echo(balancer_config.generate(kind, hosts, where, placement, full,
                                                    keepalive), nl=False)
    except (balancer_config.BalancerError, DirectoryUnavailable) as exc:
        raise click.ClickException(escape(redact_text(str(exc)))) from None


if __name__ == "__main__":  # pragma: no cover
    main()
