"""The table of what each runtime enforces (cluster/protocol/support.py): fast, no process.

It covers every worker-side option and every server, agrees with the runtimes and the
managers the workers have, makes docs/runtimes.md's table, and drives the master's refusal of an
option (or an adapter) the app's runtime does not hold. The end-to-end walk of its cells
is tests/e2e/test_runtime_support.py.
"""
from __future__ import annotations

import pytest

from cluster.protocol import adapters, support
from cluster.protocol.spec import RUNTIMES
from cluster.protocol.support import ADAPTER_FAMILIES, SERVERS, SUPPORT, Cell
from cluster.setup import options
from cluster.setup.config import make_settings
from cluster.setup.options import OPTIONS
from cluster.setup.preflight import refused_option
from tests.support.pages import page
from workers import async_managers, managers

WORKER_OPTIONS = [option.name for option in OPTIONS if option.worker]


def test_a_row_per_worker_side_option_a_cell_per_server():
    assert set(SUPPORT) == set(WORKER_OPTIONS)
    for option, cells in SUPPORT.items():
        assert list(cells) == list(SERVERS), option
        assert all(cell.how.strip() for cell in cells.values()), option
    assert set(support.SERVER_TITLES) == set(SERVERS)


def test_every_runtime_has_its_servers_and_its_adapters():
    assert set(SERVERS.values()) == set(RUNTIMES) == set(ADAPTER_FAMILIES)
    families = {scheme.family for scheme in adapters.SCHEMES.values()}
    assert set(managers.MANAGERS) == families
    for runtime, served in ADAPTER_FAMILIES.items():
        table = async_managers.MANAGERS if runtime == "asyncio" else managers.MANAGERS
        assert set(served) == set(table), runtime


def test_the_servers_of_one_runtime_agree_on_what_is_refused():
    """The master knows the runtime, not the server: a refusal must hold for all of them."""
    for option, cells in SUPPORT.items():
        for runtime in RUNTIMES:
            verdicts = {cells[server].holds for server in SERVERS if SERVERS[server] == runtime}
            assert len(verdicts) == 1, (option, runtime)


def test_docs_section_is_the_generated_one():
    text = page("runtimes")
    table = options.support_table()
    assert table in text, ("docs/runtimes.md's table of what each runtime enforces is out of "
                           "date: make docs-tables")
    rows = table.splitlines()
    assert len(rows) == 2 + len(WORKER_OPTIONS)
    assert rows[2].startswith(f"| `{options.BY_NAME[WORKER_OPTIONS[0]].long_flag}` | ")


def test_a_refused_cell_reads_so_in_the_docs():
    assert Cell("no thread pool", holds=False).markdown() == "refused: no thread pool"
    assert Cell("uvicorn's `timeout_keep_alive`").markdown() == "uvicorn's `timeout_keep_alive`"


# ------------------------------------------------------------------ the master's refusal

def test_nothing_is_refused_at_the_defaults():
    settings = make_settings("app:sio")
    assert all(refused_option(settings, runtime) is None for runtime in RUNTIMES)


def test_an_option_a_runtime_refuses_is_refused_only_when_set(monkeypatch):
    monkeypatch.setitem(SUPPORT, "websocket_rate", {
        **SUPPORT["websocket_rate"],
        "asgi": Cell("no pacing here; see `--threads`", holds=False),
        "aiohttp": Cell("no pacing here; see `--threads`", holds=False)})
    assert refused_option(make_settings("app:sio"), "asyncio") is None
    settings = make_settings("app:sio", websocket_rate=5000)
    assert refused_option(settings, "asyncio") == \
        "--websocket-rate is not for asyncio workers: no pacing here; see --threads"
    assert refused_option(settings, "eventlet") is None


@pytest.mark.parametrize("url, runtime, refused", [
    ("amqp://guest:secret@127.0.0.1:5672//", "asyncio", True),
    ("amqps://127.0.0.1//", "asyncio", True),
    ("amqp://guest:secret@127.0.0.1:5672//", "eventlet", False),
    ("amqp://guest:secret@127.0.0.1:5672//", "gevent", False),
    ("redis://:secret@127.0.0.1:6379/0", "asyncio", False),
    ("valkey+sentinel://127.0.0.1:26379/0/main", "asyncio", False),
])
def test_an_adapter_without_a_manager_in_the_runtime_is_refused(url, runtime, refused):
    line = refused_option(make_settings("app:sio", adapter=url), runtime)
    if not refused:
        assert line is None
        return
    assert line == (f"--adapter {adapters.redact(url)}: asyncio workers have no amqp manager; "
                    "they take a redis URL")
    assert "secret" not in line


@pytest.mark.parametrize("option, value, runtime, line", [
    ("threads", 50, "eventlet", "--threads is not for eventlet workers: no thread pool in this "
                                "runtime; its limit is --worker-connections"),
    ("threads", 50, "asyncio", "--threads is not for asyncio workers: no thread pool in this "
                               "runtime; its limit is --worker-connections"),
    ("threads", 50, "threading", None),
    ("worker_connections", 500, "threading",
     "--worker-connections is not for threading workers: a threading worker's limit is "
     "--threads (a connection waiting for its head holds no thread)"),
    ("worker_connections", 500, "gevent", None),
])
def test_the_limit_of_another_runtime_is_refused(option, value, runtime, line):
    assert refused_option(make_settings("app:sio", **{option: value}), runtime) == line
