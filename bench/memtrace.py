"""Where the memory per idle websocket client goes: Python allocations diffed per client.

    python -m bench.memtrace [--clients 2000] [--targets asyncio-one,asyncio-cluster]
                             [--top 25] [--frames 8]

For each target (one process of a runtime, or a cluster of ONE worker of it, so that every
client is in the process measured), started fresh with ``BENCH_TRACEMALLOC`` set: the
bench apps (``bench.app``, ``bench.asgi_app``, ``bench.gevent_app``) then call
:func:`install`, which starts :mod:`tracemalloc` and, on ``SIGUSR2``, writes a snapshot and
a count of the live objects by type (after a ``gc.collect()``). One snapshot before the
clients, one once ``--clients`` idle clients (:mod:`bench.fleet`, in room ``all``) are
connected; the difference is divided by the clients: bytes per client by the line that
allocated them (``--frames`` deep, grouped on the innermost frame of this project or of a
library that is not asyncio's or the standard library's), and objects per client by type.
Then the same for the next target, so the lines of two targets can be set side by side.

tracemalloc sees the allocations of Python's allocators (objects, and the raw and
``PyMem`` ones that C extensions use through them), not what a library allocates with
``malloc`` itself (libuv's handles in uvloop, llhttp's parser state), nor the allocator's
own overhead (partly used pools and arenas): the per-client total here is below the PSS
growth :mod:`bench.scale` measures, and the difference is that C memory and overhead.
A debug tool: nothing of it runs unless ``BENCH_TRACEMALLOC`` names a directory.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import pickle
import signal
import sys
import time
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any

ENV = "BENCH_TRACEMALLOC"
"""The directory the snapshots go to (``<pid>-<n>.pickle``); unset: nothing is traced."""

TARGETS = ("eventlet-one", "eventlet-cluster", "asyncio-one", "asyncio-cluster",
           "gevent-cluster")


def install() -> None:
    """In a bench app: when ``BENCH_TRACEMALLOC`` is set, trace allocations and write a
    snapshot and the live objects by type on each ``SIGUSR2``."""
    where = os.environ.get(ENV)
    if not where:
        return
    tracemalloc.start(int(os.environ.get(ENV + "_FRAMES", "8")))
    taken = [0]

    def dump(_signum: int, _frame: Any) -> None:
        gc.collect()
        objects = gc.get_objects()
        types = Counter(type(o).__qualname__ for o in objects)
        greenlet = sys.modules.get("greenlet")  # the green runtimes: suspended greenlets'
        stacks = 0 if greenlet is None else sum(  # C stacks, copied to the heap unseen
            o._stack_saved for o in objects if isinstance(o, greenlet.greenlet))
        del objects  # not in the snapshot
        taken[0] += 1
        path = Path(where, f"{os.getpid()}-{taken[0]}.pickle")
        with open(str(path) + ".part", "wb") as f:
            pickle.dump({"snapshot": tracemalloc.take_snapshot(), "types": dict(types),
                         "greenlet_stacks": stacks}, f)
        os.rename(str(path) + ".part", path)

    signal.signal(signal.SIGUSR2, dump)


def take(pid: int, where: Path, timeout: float = 120.0) -> dict[str, Any]:
    """Ask process ``pid`` for a snapshot (``SIGUSR2``) and read it once written."""
    before = set(where.glob(f"{pid}-*.pickle"))
    os.kill(pid, signal.SIGUSR2)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        new = set(where.glob(f"{pid}-*.pickle")) - before
        if new:
            with open(new.pop(), "rb") as f:
                return pickle.load(f)
        time.sleep(0.2)
    raise RuntimeError(f"process {pid} wrote no snapshot in {timeout:.0f} s")


def _library_frame(tb: tracemalloc.Traceback) -> str:
    """The innermost frame of ``tb`` outside asyncio and the standard library, as
    ``path:line`` (the innermost frame when there is none)."""
    stdlib = os.path.dirname(os.__file__)
    for frame in reversed(tb):  # innermost last with most_recent_first False
        name = frame.filename
        if "site-packages" in name or not name.startswith(stdlib):
            return f"{_short(name)}:{frame.lineno}"
    return f"{_short(tb[-1].filename)}:{tb[-1].lineno}"


def _short(path: str) -> str:
    for mark in ("site-packages/", "/work/"):
        if mark in path:
            return path.split(mark, 1)[1]
    return path.rpartition("/")[2]


def per_client(before: dict[str, Any], after: dict[str, Any], clients: int,
               top: int) -> dict[str, Any]:
    """Bytes per client by allocating line (innermost and project/library frame), and
    objects per client by type."""
    stats = after["snapshot"].compare_to(before["snapshot"], "traceback")
    by_line: Counter = Counter()
    by_site: Counter = Counter()
    for stat in stats:
        tb = stat.traceback
        by_line[f"{_short(tb[-1].filename)}:{tb[-1].lineno} <- {_library_frame(tb)}"] += stat.size_diff
        by_site[_library_frame(tb)] += stat.size_diff
    total = sum(s.size_diff for s in stats)
    types = Counter(after["types"])
    types.subtract(before["types"])
    return {
        "bytes_per_client": round(total / clients, 1),
        "greenlet_stack_bytes_per_client": round(
            (after.get("greenlet_stacks", 0) - before.get("greenlet_stacks", 0)) / clients, 1),
        "by_line": [(k, round(v / clients, 1)) for k, v in by_line.most_common(top)],
        "by_site": [(k, round(v / clients, 1)) for k, v in by_site.most_common(top)],
        "objects_per_client": [(k, round(v / clients, 3)) for k, v in types.most_common(top)
                               if v / clients >= 0.05],
    }


def measure(name: str, clients: int, where: Path, top: int) -> dict[str, Any]:
    """Start ``name`` fresh, snapshot it before and with ``clients`` clients, stop it."""
    from bench.fleet import Fleets
    from bench.scale import fleet_args
    from bench.targets import Cluster, Standalone, Uvicorn

    runtime, _, kind = name.partition("-")
    if kind == "one":
        target = Standalone(connections=19_000) if runtime == "eventlet" else Uvicorn()
    else:
        target = Cluster(1, None, runtime, options=["--worker-connections", "19000"])
    target.start()
    fleets = None
    try:
        time.sleep(1.0)
        pids = [p.pid for p in target.serving()]
        if len(pids) != 1:
            raise RuntimeError(f"{name}: {len(pids)} serving processes, not 1")
        before = take(pids[0], where)
        fleets = Fleets(fleet_args(target.url, clients, 20), max(1, -(-clients // 10_000)))
        live = sum(a["live"] for a in fleets.ask(("connect", clients, time.time() + 600), 700))
        time.sleep(2.0)
        after = take(pids[0], where)
        out = per_client(before, after, live, top)
        out.update(target=name, clients=live)
        return out
    finally:
        if fleets is not None:
            fleets.stop()
        target.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.memtrace", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=2000)
    ap.add_argument("--targets", default="asyncio-one,asyncio-cluster",
                    help=f"comma-separated, of: {', '.join(TARGETS)}")
    ap.add_argument("--top", type=int, default=25, help="lines shown per table (default 25)")
    ap.add_argument("--frames", type=int, default=8, help="frames kept per allocation (default 8)")
    args = ap.parse_args(argv)
    names = [t for t in args.targets.split(",") if t]
    if not names or any(t not in TARGETS for t in names):
        ap.error(f"--targets: of {', '.join(TARGETS)}")
    if not 1 <= args.clients <= 19_000:
        ap.error("--clients: 1 to 19,000 (one process's fd limit)")
    import tempfile

    from bench import loadgen
    loadgen.raise_nofile()
    with tempfile.TemporaryDirectory(prefix="bench-memtrace-") as where:
        os.environ[ENV] = where
        os.environ[ENV + "_FRAMES"] = str(args.frames)
        results = []
        for name in names:
            result = measure(name, args.clients, Path(where), args.top)
            results.append(result)
            print(json.dumps(result, indent=1), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
