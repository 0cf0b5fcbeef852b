"""The config file (cluster/setup/config_file.py), the hooks (cluster/setup/hooks.py): no process.

What a file sets, the one-line errors for what it gets wrong, the precedence of the
command line and the environment over it, ``--print-config``, and a hook that raises. A
hook that blocks (interrupted at its timeout): tests/e2e/test_config_file.py. End to end (a
real master calling the hooks): tests/e2e/test_config_hooks.py.
"""
from __future__ import annotations

import logging
import textwrap

import pytest

from cluster.cli.cli import run
from cluster.setup import config_file
from cluster.setup.config import ConfigError, make_settings
from cluster.setup.hooks import HOOK_NAMES, Hooks, WorkerInfo
from cluster.setup.options import SETTINGS


def write(tmp_path, text: str, name: str = "conf.py") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_module_level_names_are_options_and_functions_are_hooks(tmp_path):
    path = write(tmp_path, """\
        import os
        from os.path import join
        _mine = 3
        workers = _mine + 1
        bind = "127.0.0.1:7001"
        worker_class = "GEVENT"
        umask = 0o027
        graceful_timeout = 5
        proxy_protocol = True
        if os.environ.get("NOPE_NOT_SET"):
            log_level = "debug"

        def post_fork(master, worker):
            pass
        """)
    loaded = config_file.load(path)
    assert loaded.values == {"workers": 4, "bind": ["127.0.0.1:7001"], "worker_class": "gevent",
                             "umask": "27", "graceful_timeout": 5.0, "proxy_protocol": True}
    assert list(loaded.hooks) == ["post_fork"]
    assert loaded.where("workers") == f"{path}:4"
    settings = make_settings("app:sio", **loaded.values)
    assert (settings.workers, settings.runtime, settings.umask) == (4, "gevent", 0o27)


def test_every_option_of_the_table_can_be_set_in_a_file(tmp_path):
    samples = {bool: "True", int: "3", float: "2.5"}
    lines = []
    for option in SETTINGS:
        if option.multiple:
            value = repr([str(tmp_path)]) if option.name == "reload_dir" else "['127.0.0.1:7002']"
        elif option.name == "route":
            value = "'sid'"  # several hosts (host_id, advertise, peers below) need it
        elif option.choices:
            value = repr(option.choices[-1])
        elif option.kind is str:
            value = {"umask": "'027'", "adapter": "'redis://127.0.0.1:6379/0'",
                     "forwarded_allow_ips": "'10.0.0.0/8'", "proxy_allow_from": "'10.0.0.1'",
                     "status_bind": "'127.0.0.1:7003'", "access_log_format": "'%(h)s'",
                     "advertise": "'127.0.0.1:7002'", "peers": "'3=127.0.0.1:7002'",
                     "user": None, "group": None}.get(option.name, "'x'")
        else:
            value = {"max_worker_memory": "100", "max_worker_memory_jitter": "10",
                     "max_worker_age": "600", "max_worker_age_jitter": "60"}.get(
                         option.name, samples[option.kind])
        if value is not None:
            lines.append(f"{option.name} = {value}")
    loaded = config_file.load(write(tmp_path, "\n".join(lines) + "\n"))
    assert set(loaded.values) == {option.name for option in SETTINGS} - {"user", "group"}
    make_settings("app:sio", **loaded.values)  # every value is one Settings takes


@pytest.mark.parametrize(("text", "message"), [
    ("workers = 2\nworkrs = 3\n", ":2: unknown option 'workrs' (did you mean 'workers'?)"),
    ("def post_frok(master, worker):\n    pass\n",
     ":1: unknown option 'post_frok' (did you mean 'post_fork'?)"),
    ("workers = 2\ndef f(:\n    pass\n", ":2: syntax error"),
    ("import not_a_module_anywhere\n", ":1: ModuleNotFoundError"),
    ("workers = 0\n", ":1: workers must be more than 0, got 0"),
    ("workers = '4'\n", ":1: workers must be a whole number, got '4'"),
    ("timeout = True\n", ":1: timeout must be a number"),
    ("bind = 5000\n", ":1: bind must be a string or a list of strings"),
    ("route = 'cookie'\n", ":1: bad route 'cookie'"),
    ("umask = '9'\n", ":1: bad umask '9'"),
    ("reload_dir = ['/no/such/dir']\n", ":1: --reload-dir: no such file or directory"),
    ("check = True\n", ":1: unknown option 'check'"),
    ("on_exit = 3\n", ":1: hook on_exit must be a function"),
])
def test_a_bad_file_is_one_line_with_file_and_line(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        config_file.load(path)
    assert str(info.value).startswith(path + message.split(":", 2)[0] + ":" + message.split(":")[1])
    assert message.split(":", 2)[2] in str(info.value)
    assert "\n" not in str(info.value)


def test_a_missing_file_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match="cannot read the config file .*: No such file"):
        config_file.load(str(tmp_path / "none.py"))


def _sources(argv: list[str], monkeypatch, env: dict[str, str] | None = None) -> dict:
    from cluster.cli.cli import _sources
    for name, value in (env or {}).items():
        monkeypatch.setenv(name, value)
    context = run.make_context("run", ["app:sio", *argv])
    options = {name: value for name, value in context.params.items()
               if name not in ("target", "check", "config", "print_config")}
    return _sources(context, options)


def test_command_line_beats_environment_beats_file_beats_default(tmp_path, monkeypatch):
    loaded = config_file.load(write(tmp_path, "workers = 2\ntimeout = 9\nchannel = 'f'\n"
                                              "log_level = 'error'\n"))
    given = _sources(["-w", "5"], monkeypatch, {"STICKY_CLUSTER_WORKERS": "3",
                                                "STICKY_CLUSTER_TIMEOUT": "7"})
    merged = config_file.merge(given, loaded)
    assert merged["workers"] == (5, "command line")
    assert merged["timeout"] == (7.0, "environment STICKY_CLUSTER_TIMEOUT")
    assert merged["channel"] == ("f", f"config file {loaded.path}:3")
    assert merged["graceful_timeout"] == (None, "default")


def test_print_config_says_each_source_and_masks_passwords(tmp_path, monkeypatch):
    loaded = config_file.load(write(tmp_path, """\
        adapter = "redis://user:s3cret@127.0.0.1:6379/0"
        def on_starting(master):
            pass
        """))
    merged = config_file.merge(_sources(["--workers", "2"], monkeypatch), loaded)
    text = config_file.report(merged, loaded)
    assert "s3cret" not in text
    lines = {line.split(" =")[0]: line for line in text.splitlines()}
    assert lines["adapter"].startswith("adapter = 'redis://user:***@127.0.0.1:6379/0'")
    assert lines["adapter"].endswith(f"# config file {loaded.path}:1")
    assert lines["workers"].startswith("workers = 2 ") and lines["workers"].endswith("# command line")
    assert lines["bind"].startswith("bind = ['127.0.0.1:5000']")
    assert lines["bind"].endswith("# default")
    [hook] = [line for line in text.splitlines() if line.startswith("# hook ")]
    assert hook.startswith("# hook on_starting ") and hook.endswith(f"# config file {loaded.path}:2")
    assert len([line for line in text.splitlines() if not line.startswith("#")]) == len(SETTINGS)


# ----------------------------------------------------------------------- hooks

def test_hooks_are_called_with_their_arguments_and_unknown_ones_refused():
    seen = []
    hooks = Hooks({"pre_fork": lambda master, worker: seen.append((master, worker))})
    hooks.call("pre_fork", "m", WorkerInfo(1, 7))
    hooks.call("on_exit", "m")  # not given: nothing
    assert seen == [("m", WorkerInfo(1, 7))]
    assert hooks.names == ["pre_fork"]
    with pytest.raises(ValueError, match="unknown hook 'when_redy' \\(did you mean 'when_ready'"):
        Hooks({"when_redy": print})
    assert HOOK_NAMES[0] == "on_starting" and HOOK_NAMES[-1] == "on_exit"


def test_a_hook_that_raises_is_one_line_with_its_name(caplog):
    def when_ready(master):
        raise KeyError("gone")

    with caplog.at_level(logging.ERROR, logger="sticky_cluster.master"):
        Hooks({"when_ready": when_ready}).call("when_ready", None)
    [record] = caplog.records
    message = record.getMessage()
    assert message.startswith("hook when_ready raised KeyError: 'gone' (at ")
    assert "test_config_file.py:" in message and "\n" not in message
