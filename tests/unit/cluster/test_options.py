"""The options table (cluster/setup/options.py) against everything made from it: fast, no process.

docs/options.md's table, the click options of ``sticky-cluster run`` (flags, environment
variables, help), Settings' fields and defaults and WorkerSpec's option fields must all
agree with :data:`cluster.setup.options.OPTIONS`.
"""
from __future__ import annotations

import dataclasses
import socket

import click
import pytest

from cluster.cli.cli import run
from cluster.setup import options
from cluster.setup.config import Bind, ConfigError, Settings, make_settings
from cluster.setup.container import usable_cpus
from cluster.setup.options import BY_NAME, OPTIONS, SETTINGS
from cluster.protocol import support
from cluster.protocol.spec import WorkerSpec
from tests.support.pages import page

ENV_NAMES_BEFORE_THE_TABLE = {
    "WORKERS", "BIND", "ADAPTER", "CHANNEL", "WORKER_CONNECTIONS", "TIMEOUT", "GRACEFUL_TIMEOUT",
    "LOG_LEVEL", "LOG_FILE", "PID", "ROUTE", "BALANCE", "PROXY_PROTOCOL", "FORWARDED_ALLOW_IPS",
    "PEEK_TIMEOUT", "UMASK", "USER", "GROUP", "STATUS_BIND", "CONTROL", "ACCESS_LOG",
    "ACCESS_LOG_FORMAT", "LOG_FORMAT", "CHECK", "HEADER_TIMEOUT", "KEEPALIVE_TIMEOUT",
    "WEBSOCKET_RATE", "WORKER_CLASS"}
"""Every STICKY_CLUSTER_<NAME> users may have set before the table existed."""

WORKERS_OWN_FIELDS = {"target", "slot", "tag", "heartbeat_interval", "server_address", "family",
                      "hand_back", "place_new_sessions", "host"}


def _run_params() -> dict[str, click.Option]:
    return {param.name: param for param in run.params if isinstance(param, click.Option)}


def test_docs_options_table_is_the_generated_one():
    text = page("options")
    assert options.markdown_table() in text, (
        "docs/options.md's options table is out of date: make docs-tables")
    assert options.replace_table(text, "options.md") == text


def test_the_tables_rewrite_themselves_into_the_docs(tmp_path, capsys):
    (tmp_path / "options.md").write_text(
        "# x\n\n" + options.TABLE_HEADER + "\n| `--old` | 1 | gone |\n\nmiddle\n")
    (tmp_path / "runtimes.md").write_text(
        "# y\n\n" + support.TABLE_HEADER + "\n| `--old` | a | b | c | d |\n\nafter\n")
    assert options.main(["--docs", str(tmp_path)]) == 0
    assert (tmp_path / "options.md").read_text() == (
        "# x\n\n" + options.markdown_table() + "\n\nmiddle\n")
    assert (tmp_path / "runtimes.md").read_text() == (
        "# y\n\n" + options.support_table() + "\n\nafter\n")
    assert options.main([]) == 0
    assert capsys.readouterr().out == options.markdown_table() + "\n\n" + options.support_table() + "\n"


def test_docs_without_their_tables_are_left_whole(tmp_path):
    (tmp_path / "options.md").write_text("# x\n\n" + options.TABLE_HEADER + "\n")
    (tmp_path / "runtimes.md").write_text("# y\n")
    with pytest.raises(ValueError):
        options.main(["--docs", str(tmp_path)])
    assert (tmp_path / "options.md").read_text() == "# x\n\n" + options.TABLE_HEADER + "\n"
    assert (tmp_path / "runtimes.md").read_text() == "# y\n"


def test_every_click_option_of_run_is_a_row_of_the_table():
    params = _run_params()
    assert set(params) == set(BY_NAME)
    for name, param in params.items():
        option = BY_NAME[name]
        assert param.envvar == option.env
        assert option.long_flag in param.opts
        assert (option.short in param.opts) if option.short else len(param.opts) == 1
        assert param.multiple is option.multiple
        assert param.is_flag is (option.kind is bool)
        if option.choices:
            assert tuple(param.type.choices) == option.choices  # type: ignore[attr-defined]


def test_every_environment_variable_of_before_still_works():
    assert {option.env for option in OPTIONS} >= {f"STICKY_CLUSTER_{name}"  # and new ones
                                                  for name in ENV_NAMES_BEFORE_THE_TABLE}
    assert BY_NAME["pid_file"].env == "STICKY_CLUSTER_PID"
    assert BY_NAME["worker_class"].env == "STICKY_CLUSTER_WORKER_CLASS"


def _sample(option: options.Option) -> tuple[str, object]:
    """A value for ``option`` as the environment gives it, and as click hands it on."""
    if option.kind is bool:
        return "1", True
    if option.multiple:
        return "127.0.0.1:1 unix:/tmp/x", ("127.0.0.1:1", "unix:/tmp/x")
    if option.choices:
        return option.choices[-1].upper(), option.choices[-1]
    return {int: ("7", 7), float: ("2.5", 2.5)}.get(option.kind, ("some-text", "some-text"))


def test_run_reads_every_option_from_its_environment_variable(monkeypatch):
    wanted = {}
    for option in OPTIONS:
        text, wanted[option.name] = _sample(option)
        monkeypatch.setenv(option.env, text)
    context = run.make_context("run", ["app:sio"])
    assert {name: context.params[name] for name in wanted} == wanted


def test_the_command_line_wins_over_the_environment(monkeypatch):
    monkeypatch.setenv("STICKY_CLUSTER_WORKERS", "3")
    assert run.make_context("run", ["app:sio", "-w", "5"]).params["workers"] == 5


def test_help_shows_each_default_and_environment_variable():
    text = run.get_help(run.make_context("run", ["app:sio"]))
    for option in OPTIONS:
        assert option.env in text
        assert "None" not in option.default_text(), f"{option.name}: say what no value means"
    collapsed = " ".join(text.split())
    assert "[default: $WEB_CONCURRENCY, else the CPUs this process may use]" in collapsed
    assert "[default: 127.0.0.1:5000; 0.0.0.0:$PORT when PORT is set]" in collapsed
    assert "[default: 30]" in collapsed  # --timeout, as the docs have it, not 30.0
    assert "[default: least-loaded]" in collapsed


def test_settings_has_one_field_per_option_with_the_tables_default():
    fields = {field.name: field for field in dataclasses.fields(Settings)}
    assert set(fields) == {"target"} | {option.settings_field for option in SETTINGS}
    settings = Settings("app:sio")
    for option in SETTINGS:
        value = getattr(settings, option.settings_field)
        if option.name == "bind":
            assert value == (Bind(socket.AF_INET, ("127.0.0.1", 5000)),)
        elif option.name == "workers":
            assert value == usable_cpus()
        else:
            assert value == option.default, option.name


def test_workerspec_carries_every_worker_side_option():
    fields = {field.name for field in dataclasses.fields(WorkerSpec)}
    assert fields - WORKERS_OWN_FIELDS == {option.name for option in OPTIONS if option.worker}
    settings = make_settings("app:sio", channel="c", websocket_rate=5, access_log="-",
                             adapter="redis://127.0.0.1:6379/0")
    carried = options.worker_options(settings)
    assert carried["channel"] == "c" and carried["websocket_rate"] == 5
    assert carried["access_log"] == "-"


@pytest.mark.parametrize(("given", "message"), [
    ({"workers": 0}, "workers must be more than 0, got 0"),
    ({"worker_connections": -1}, "worker connections must be more than 0, got -1"),
    ({"graceful_timeout": -1}, "graceful timeout must be 0 or more"),
    ({"worker_class": "threads"},
     "bad worker class 'threads': use one of auto, eventlet, gevent, asyncio"),
    ({"log_level": "loud"}, "bad log level 'loud': use one of debug, info, warning, error, critical"),
    ({"route": "cookie"}, "bad route 'cookie': use one of sid, ip"),
    ({"channel": ""}, "the channel name cannot be empty"),
    ({"umask": "1000"}, "bad umask 1000: use 000 to 777 (octal)"),
    ({"umask": "9"}, "bad umask '9': expected an octal number such as 027"),
    ({"forwarded_allow_ips": "10.0.0.0/99"}, "bad forwarded-allow-ips"),
    ({"access_log_format": "%(nope)s"}, "bad access log format"),
    ({"adapter": "http://x"}, "adapter"),
    ({"bind": []}, "at least one bind address is needed"),
    ({"drain_spread": -1}, "drain spread must be 0 or more"),
    ({"max_worker_memory": 0}, "max worker memory must be more than 0, got 0"),
    ({"max_worker_memory": -5}, "max worker memory must be more than 0, got -5"),
    ({"max_worker_age": 0}, "max worker age must be more than 0, got 0"),
    ({"max_worker_age_jitter": -1}, "max worker age jitter must be 0 or more"),
    ({"max_worker_memory": 100, "max_worker_memory_jitter": 100},
     "max worker memory jitter must be less than max worker memory"),
    ({"channel": "chat"},
     "--channel names a pub/sub channel of --adapter; the embedded relay has none"),
])
def test_a_bad_value_is_one_line_naming_the_option(given, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        make_settings("app:sio", **given)
    assert "\n" not in str(info.value)


def test_keywords_are_the_tables_and_nothing_else():
    settings = make_settings("app:sio", bind=["127.0.0.1:7000", "unix:/tmp/s"], pid_file="p",
                             worker_class="gevent", umask="027", status_bind="127.0.0.1:9")
    assert [str(bind) for bind in settings.binds] == ["127.0.0.1:7000", "unix:/tmp/s"]
    assert (settings.pid_file, settings.runtime, settings.umask) == ("p", "gevent", 0o27)
    assert str(settings.status_bind) == "127.0.0.1:9"
    for wrong in ({"wokers": 2}, {"check": True}):
        with pytest.raises(TypeError, match="unknown option"):
            make_settings("app:sio", **wrong)


# ------------------------------------------------------------------ several hosts

def test_one_host_unless_an_option_of_several_hosts_is_given():
    settings = make_settings("app:sio", bind="0.0.0.0:8000")
    assert not settings.several_hosts
    assert make_settings("app:sio", bind="10.0.0.1:8000", adapter="redis://r:6379/0",
                         host_id=2).several_hosts


def test_advertise_defaults_to_a_specific_bind_address(monkeypatch):
    settings = make_settings("app:sio", bind="10.0.0.1:8000", adapter="redis://r:6379/0",
                             host_id=2)
    assert settings.advertise_address == ("10.0.0.1", 8000)
    monkeypatch.setenv("STICKY_CLUSTER_ADVERTISE", "10.0.0.9:80")
    context = run.make_context("run", ["app:sio"])
    assert context.params["advertise"] == "10.0.0.9:80"
    assert make_settings("app:sio", bind="0.0.0.0:8000", adapter="redis://r:6379/0",
                         advertise="[fd00::1]:8000").advertise_address == ("fd00::1", 8000)


def test_peers_are_read_with_this_hosts_id():
    settings = make_settings("app:sio", bind="0.0.0.0:8000", advertise="10.0.0.1:8000",
                             host_id=1, peers="1=10.0.0.1:8000, 2=10.0.0.2:8000")
    assert settings.static_peers == {1: ("10.0.0.1", 8000), 2: ("10.0.0.2", 8000)}


@pytest.mark.parametrize("given, message", [
    (dict(host_id=0), "bad --host-id 0: a number from 1 to 4095"),
    (dict(host_id=4096), "bad --host-id 4096: a number from 1 to 4095"),
    (dict(advertise="10.0.0.1"), "--advertise: bad address '10.0.0.1'"),
    (dict(peers="2=10.0.0.2"), "--peers: bad address '10.0.0.2'"),
    (dict(peers="2"), "--peers: bad entry '2': expected ID=HOST:PORT"),
    (dict(host_id=2, adapter="redis://r:6379/0"),
     "several hosts need --advertise HOST:PORT: other masters must reach this one; "
     "--bind 0.0.0.0:8000 names no address"),
    (dict(host_id=2, adapter="redis://r:6379/0", bind="unix:/tmp/s"),
     "--bind unix:/tmp/s names no address"),
    (dict(advertise="10.0.0.1:8000"),
     "several hosts need a directory of hosts: give --adapter redis://… (a Redis-family "
     "broker carries it) or --peers ID=HOST:PORT,…"),
    (dict(advertise="10.0.0.1:8000", adapter="amqp://guest:secret@r/"),
     "--adapter amqp://… cannot carry the directory of hosts: give --peers ID=HOST:PORT,…"),
    (dict(advertise="10.0.0.1:8000", peers="1=10.0.0.1:8000,2=10.0.0.2:8000"),
     "--peers needs --host-id N: which of the peers this host is"),
    (dict(advertise="10.0.0.1:8000", host_id=2, peers="1=10.0.0.1:8000,2=10.0.0.2:8000"),
     "--peers gives this host's address 10.0.0.1:8000 to host 1, but --host-id is 2"),
    (dict(advertise="10.0.0.3:8000", host_id=2, peers="1=10.0.0.1:8000,2=10.0.0.2:8000"),
     "--peers puts host 2 at 10.0.0.2:8000, but this host advertises 10.0.0.3:8000"),
    (dict(host_id=2, adapter="redis://r:6379/0", bind="10.0.0.1:8000", route="ip"),
     "several hosts need --route sid"),
    (dict(host_id=2, adapter="redis://r:6379/0", advertise="host-b.internal:8000"),
     "--advertise host-b.internal:8000: give an IP address, not a name"),
    (dict(advertise="10.0.0.1:8000", host_id=1, peers="1=10.0.0.1:8000,2=host-b:8000"),
     "--peers host-b:8000: give an IP address, not a name"),
])
def test_several_hosts_refusals_are_one_line(given, message):
    given = {"bind": "0.0.0.0:8000", **given}
    with pytest.raises(ConfigError) as info:
        make_settings("app:sio", **given)
    assert message in str(info.value)
    assert "\n" not in str(info.value) and "secret" not in str(info.value)
