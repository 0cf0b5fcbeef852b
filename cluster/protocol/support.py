"""What each worker runtime does with each worker-side option: one table, read three ways.

:data:`SUPPORT` says, for every option the workers need (``worker=True`` in
``cluster/setup/options.py``) and every server a worker runs (:data:`SERVERS`), how the option
holds there (whose setting, or which part of ours, enforces it), or that the runtime
refuses it.

- docs/runtimes.md's table is made from it (:func:`markdown_table`;
  ``make docs-tables`` rewrites it, a test keeps them equal);
- the master refuses, before it forks any worker, an option set (not at its default)
  that the app's runtime does not hold (:func:`refusal`, called by ``cluster.setup.preflight``
  once the runtime is known), and an adapter URL of a broker family the runtime has no
  manager for (:data:`ADAPTER_FAMILIES`);
- ``tests/e2e/test_runtime_support.py`` walks it: one end-to-end probe per cell, which shows
  the option's effect, or the master's refusal line.

A cell is true of the code it names; a change there changes the cell. Standard library
only, like the rest of :mod:`cluster.protocol`.
"""
from __future__ import annotations

import dataclasses

SERVERS: dict[str, str] = {
    "eventlet": "eventlet",
    "gevent": "gevent",
    "asgi": "asyncio",
    "aiohttp": "asyncio",
    "threading": "threading",
}
"""Each server a worker runs (a column of the table) -> its runtime (a key of
:data:`cluster.protocol.spec.RUNTIMES`). The asyncio runtime serves ASGI apps (FastAPI,
Starlette, ``socketio.ASGIApp``) with uvicorn's protocols and aiohttp apps with aiohttp's; the
threading runtime serves WSGI apps (Flask-SocketIO, ``socketio.Server(async_mode="threading")``)
with a poller and a pool of threads of ours."""

SERVER_TITLES: dict[str, str] = {
    "eventlet": "eventlet",
    "gevent": "gevent",
    "asgi": "asyncio: ASGI",
    "aiohttp": "asyncio: aiohttp",
    "threading": "threading",
}
"""The column titles of docs/runtimes.md's table."""


@dataclasses.dataclass(frozen=True)
class Cell:
    """What one server does with one option.

    :param how: how the option holds (whose setting or which part of the worker enforces
                it), or, when ``holds`` is False, why the runtime refuses it.
    :param holds: False: the master refuses the option (away from its default) for this
                  server's runtime, in one line, before it forks any worker.
    """

    how: str
    holds: bool = True

    def markdown(self) -> str:
        """The cell as the docs show it."""
        return self.how if self.holds else f"refused: {self.how}"


def _everywhere(how: str) -> dict[str, Cell]:
    return {server: Cell(how) for server in SERVERS}


SUPPORT: dict[str, dict[str, Cell]] = {
    "adapter": {
        "eventlet": Cell("python-socketio's `RedisManager` (Redis, Valkey, Sentinel) or "
                         "`KombuManager` (AMQP)"),
        "gevent": Cell("python-socketio's `RedisManager` (Redis, Valkey, Sentinel) or "
                       "`KombuManager` (AMQP)"),
        "asgi": Cell("python-socketio's `AsyncRedisManager` (Redis, Valkey, Sentinel); an "
                     "`amqp://` URL is refused"),
        "aiohttp": Cell("python-socketio's `AsyncRedisManager` (Redis, Valkey, Sentinel); an "
                        "`amqp://` URL is refused"),
        "threading": Cell("python-socketio's `RedisManager` (Redis, Valkey, Sentinel) or "
                          "`KombuManager` (AMQP)"),
    },
    "channel": _everywhere("the manager's pub/sub channel (AMQP: its exchange); the relay "
                           "through the master has none"),
    "worker_connections": {
        "eventlet": Cell("eventlet's `GreenPool` of that size: one more is answered `503`"),
        "gevent": Cell("gevent's `Pool` of that size: one more is answered `503`"),
        "asgi": Cell("uvicorn's `limit_concurrency`: one more is answered `503`"),
        "aiohttp": Cell("our check in front of aiohttp's server: one more is answered `503`"),
        "threading": Cell("a threading worker's limit is `--threads` (a connection waiting for "
                          "its head holds no thread)", holds=False),
    },
    "threads": {
        **{server: Cell("no thread pool in this runtime; its limit is `--worker-connections`",
                        holds=False) for server in ("eventlet", "gevent", "asgi", "aiohttp")},
        "threading": Cell("our pool of that many threads (a websocket holds one): all busy, "
                          "the worker is full; a request that waits 3 s for one is answered "
                          "`503`"),
    },
    "graceful_timeout": {
        "eventlet": Cell("our drain (a green thread), then `eventlet.wsgi.server` returns"),
        "gevent": Cell("our drain (a greenlet), then the pool is killed"),
        "asgi": Cell("our drain (a task), then uvicorn's connection shutdown and the "
                     "lifespan shutdown"),
        "aiohttp": Cell("our drain (a task), then aiohttp's `Server.shutdown` and the app's "
                        "cleanup"),
        "threading": Cell("our drain (a thread), then the poller stops"),
    },
    "drain_spread": {
        "eventlet": Cell("our drain closes the sessions left in even batches, with green "
                         "sleeps between them"),
        "gevent": Cell("our drain closes the sessions left in even batches, with green sleeps "
                       "between them"),
        "asgi": Cell("our drain closes the sessions left in even batches, with asyncio sleeps "
                     "between them"),
        "aiohttp": Cell("our drain closes the sessions left in even batches, with asyncio sleeps "
                        "between them"),
        "threading": Cell("our drain closes the sessions left in even batches, with sleeps "
                          "between them"),
    },
    "access_log": {
        "eventlet": Cell("our WSGI middleware"),
        "gevent": Cell("our WSGI middleware"),
        "asgi": Cell("our ASGI middleware"),
        "aiohttp": Cell("aiohttp's `access_log_class` hook, with our line writer"),
        "threading": Cell("our WSGI middleware"),
    },
    "access_log_format": _everywhere("our line writer: gunicorn's atoms, `%(slot)s`, "
                                     "`%(transport)s`"),
    "forwarded_allow_ips": {
        "eventlet": Cell("our protocol's environ: `wsgi.url_scheme` and `HTTP_HOST` from "
                         "`X-Forwarded-Proto`/`-Host` of a trusted peer"),
        "gevent": Cell("our handler's environ: `wsgi.url_scheme` and `HTTP_HOST` from "
                       "`X-Forwarded-Proto`/`-Host` of a trusted peer"),
        "asgi": Cell("our ASGI wrapper: the scope's `scheme` and `host` header"),
        "aiohttp": Cell("our middleware: the request's scheme and host"),
        "threading": Cell("our WSGI wrapper: `wsgi.url_scheme` and `HTTP_HOST`"),
    },
    "header_timeout": {
        "eventlet": Cell("eventlet.wsgi's protocol with our deadline (`eventlet.Timeout`) "
                         "and per-read socket timeouts"),
        "gevent": Cell("gevent.pywsgi's handler with our deadline (`gevent.Timeout`) and "
                       "per-read socket timeouts"),
        "asgi": Cell("our guard in front of uvicorn's protocol"),
        "aiohttp": Cell("our guard in front of aiohttp's protocol"),
        "threading": Cell("our poller's deadline (the head is read without a thread), then "
                          "per-read socket timeouts"),
    },
    "keepalive_timeout": {
        "eventlet": Cell("eventlet.wsgi's protocol with our wait for the next request"),
        "gevent": Cell("gevent.pywsgi's handler with our wait for the next request"),
        "asgi": Cell("uvicorn's `timeout_keep_alive`"),
        "aiohttp": Cell("aiohttp's `keepalive_timeout`"),
        "threading": Cell("our poller's deadline between two requests"),
    },
    "websocket_rate": {
        "eventlet": Cell("our metered socket under eventlet's websocket"),
        "gevent": Cell("our paced reader under simple-websocket"),
        "asgi": Cell("our guard in front of uvicorn's websocket protocol: frames counted, "
                     "reading paused past the budget"),
        "aiohttp": Cell("our guard in front of aiohttp's protocol: frames counted, reading "
                        "paused past the budget"),
        "threading": Cell("our paced reader in the thread that waits for the message"),
    },
    "websocket_deflate": {
        "eventlet": Cell("eventlet's permessage-deflate with 4 KB windows, messages under 1 KB "
                         "sent plain; it inflates a message at most to `max_http_buffer_size` "
                         "(1009 past it)"),
        "gevent": Cell("wsproto's permessage-deflate under simple-websocket, with 4 KB windows, "
                       "messages under 1 KB sent plain, and our bounded inflate (1009 past "
                       "`max_http_buffer_size`)"),
        "asgi": Cell("uvicorn's `ws_per_message_deflate` with its websockets implementations, "
                     "which inflate at most `ws_max_size` (`websockets-sansio`, its default: "
                     "4 KB windows, messages under 1 KB sent plain); stays off with wsproto, "
                     "which inflates a whole frame"),
        "aiohttp": Cell("aiohttp's `compress` (its own windows, the client's choice; every "
                        "message compressed); it inflates at most `max_msg_size`"),
        "threading": Cell("wsproto's permessage-deflate, with 4 KB windows, messages under 1 KB "
                          "sent plain, and our bounded inflate (1009 past "
                          "`max_http_buffer_size`)"),
    },
}
"""Worker-side option (its ``cluster.setup.options`` name) -> server (:data:`SERVERS`) ->
:class:`Cell`."""

ADAPTER_FAMILIES: dict[str, tuple[str, ...]] = {
    "eventlet": ("redis", "amqp"),
    "gevent": ("redis", "amqp"),
    "asyncio": ("redis",),
    "threading": ("redis", "amqp"),
}
"""Runtime -> the broker families (:data:`cluster.protocol.adapters.SCHEMES`) its workers
have a manager for (asyncio has no AMQP manager: python-socketio's needs aio-pika)."""


def refusal(runtime: str, option: str) -> str | None:
    """Why ``runtime``'s workers refuse ``option`` (set away from its default), or None.

    The master knows the runtime, not which server of it the app gets, so the servers of
    one runtime must agree (a test keeps them so).
    """
    for server, cell in SUPPORT[option].items():
        if SERVERS[server] == runtime and not cell.holds:
            return cell.how
    return None


def adapter_refusal(runtime: str, family: str) -> str | None:
    """Why ``runtime``'s workers cannot use a broker of ``family``, or None."""
    families = ADAPTER_FAMILIES[runtime]
    if family in families:
        return None
    return (f"{runtime} workers have no {family} manager; they take "
            + " or ".join(f"a {name} URL" for name in families))


TABLE_HEADER = ("| option | " + " | ".join(SERVER_TITLES[server] for server in SERVERS)
                 + " |\n| --- |" + " --- |" * len(SERVERS))
"""The first two lines of docs/runtimes.md's table."""
TABLE_ANCHOR = "| option | eventlet |"
"""How docs/runtimes.md's table begins, whatever columns follow (where ``make docs-tables`` finds it)."""


def markdown_table(flags: dict[str, str]) -> str:
    """docs/runtimes.md's table, header included: a row per option (``flags``: option name -> its
    long flag, in the order the rows go)."""
    rows = [TABLE_HEADER]
    for name, flag in flags.items():
        cells = [SUPPORT[name][server].markdown() for server in SERVERS]
        rows.append(_row(f"`{flag}`", cells))
    return "\n".join(rows)


def _row(first: str, cells: list[str]) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in (first, *cells)) + " |"
