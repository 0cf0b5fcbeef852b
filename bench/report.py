"""What ``bench.run`` writes: a verdict per target, docs/benchmarks.md, docs/benchmarks.png."""
from __future__ import annotations

import dataclasses
import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

BASE = "standalone"
Medians = dict[str, dict[str, float]]


@dataclasses.dataclass(frozen=True)
class Verdict:
    """One target of the issue, and whether this run met it."""

    kind: str
    met: bool
    text: str


WHY_NOT = {
    "echo": "Each worker is one eventlet process and the load generator needs part of the same "
            "2 cores (its share is in the CPU table), so 2 workers never get 2 whole cores; "
            "a load generator on another machine, or more cores, shows the headroom.",
    "handshakes": "A polling handshake costs a worker 0.6–0.7 ms of CPU (eventlet.wsgi and "
                  "python-engineio: parse the request, make the session, write the open "
                  "packet), and the load generator opening new connections needs about 0.6 "
                  "core of the 2. The workers share the ~1.3 cores left: ~1,900 handshakes/s "
                  "at best, against ~1,700/s for one process on a core of its own, so at most "
                  "~1.15× on this machine. A load generator on another machine, or more "
                  "cores, is what it takes; the master is not the limit (its share is in the "
                  "CPU table).",
    "master": "This machine's workers do not reach 2,500 handshakes/s with the load generator "
              "beside them, so the figure is the cost per handshake measured at their rate, "
              "times 2,500: a pessimistic projection, since the cost falls as the rate rises "
              "(each wake-up of the loop then finds more connections; 27 µs per handshake, "
              "6.8 % of a core, was measured at 2,476/s while the master was tuned). A "
              "hand-off alone costs ~13 µs; the rest is per wake-up (epoll, the callbacks, the "
              "accept that ends a batch) and a cold CPU cache after the workers ran. The 2 ms "
              "accept linger batches connections; what would cut the rest is the "
              "accept/sendmsg loop in C (a small extension module).",
    "broadcast": "An eventlet worker spends about 40 µs per recipient on a websocket send (a "
                 "green-thread switch and a send() per client), so one process takes ~8 ms to "
                 "fan a message out to 200 clients, and the load generator's 200 receipts run "
                 "on the same 2 cores: the one-process baseline's own p99 is above 10 ms here. "
                 "The relay's hop through the master costs microseconds. More cores (workers "
                 "fan out in parallel) or a cheaper per-client send path in python-engineio "
                 "would fix it.",
    "memory": "PSS is summed over several processes and moves by a few hundred KB between "
              "samples (allocator arenas, pages shared after the fork, the Redis client's "
              "buffers); per client that is within a KB of the one-process figure.",
    "rss": "",
    "one_source": "Placement by load spreads the sessions of one address over both workers "
                  "(the tests show 40 clients of one address as 10/10/10/10 on 4 workers); what "
                  "limits the rate is the CPU, as for the handshakes above: the workers, the "
                  "master and the load generator share 2 cores. Before placement by load, one "
                  "address always went to one worker, so the cluster could never beat 1.0×.",
    "asyncio echo": "The asyncio workers and the load generator share the same 2 cores as "
                    "for eventlet; at 1,000 clients one uvicorn process saturates its core and "
                    "two workers pass it by far, at 100 clients the load generator's share "
                    "leaves the workers little more than one core.",
    "asyncio handshakes": "A handshake through uvicorn costs its process less than eventlet's, "
                          "so the master's hand-off (accept, peek, sendmsg) and a second "
                          "process on the same 2 cores weigh more; one uvicorn process accepts "
                          "on its own core with no hand-off at all.",
    "asyncio memory": "An idle uvicorn websocket costs well under 1 KB, less than PSS moves "
                      "between two samples of several processes (allocator arenas, pages "
                      "shared after the fork): the ratio is noise at this size.",
}


ASYNCIO_BASE = "uvicorn"
"""The baseline of the asyncio worker rows (``asyncio-relay-N``, ``asyncio-redis-N``)."""
THREADING_BASE = "gthread"
"""The baseline of the threading worker rows (``threading-relay-N``, ``threading-redis-N``)."""


def baseline(name: str) -> str:
    """The target whose figures ``name``'s ratios are taken against."""
    if name.startswith("asyncio-"):
        return ASYNCIO_BASE
    return THREADING_BASE if name.startswith("threading-") else BASE


def _ratio(medians: Medians, name: str, key: str) -> float | None:
    base = medians.get(baseline(name), {}).get(key)
    value = medians.get(name, {}).get(key)
    return value / base if base and value is not None else None


def _cluster_names(medians: Medians, adapter: str) -> list[str]:
    """The cluster rows of ``adapter`` (``relay``, ``asyncio-redis`` …), by worker count."""
    return sorted((n for n in medians if n.startswith(adapter + "-")
                   and n[len(adapter) + 1:].isdigit()),
                  key=lambda n: int(n.rpartition("-")[2]))


def _two_or_best(medians: Medians, adapter: str) -> str | None:
    names = _cluster_names(medians, adapter)
    return f"{adapter}-2" if f"{adapter}-2" in names else (names[-1] if names else None)


HANDOFF_NOISE = 1.15
"""How much dearer this tree's hand-off may measure than a baseline version's and still be
"no regression": single runs of the same code move about ±15 % on this kind of machine."""


def verdicts(medians: Medians, version: str | None = None) -> list[Verdict]:
    """The issue's targets against this run's medians (2 workers: the machine's cores).

    :param version: the git ref measured beside this tree (``bench.run --baseline``), if any.
    """
    out = handoff_verdicts(medians, version) if version else []
    redis = _two_or_best(medians, "redis")
    relay = _two_or_best(medians, "relay")
    if redis:
        ratios = [_ratio(medians, redis, f"echo{n}_rate") for n in (100, 1000)]
        if None not in ratios:
            out.append(Verdict("echo", min(ratios) >= 1.3,
                               f"echo, Redis, {redis}: {ratios[0]:.2f}× at 100 clients, "
                               f"{ratios[1]:.2f}× at 1,000 clients of one eventlet process "
                               f"(target ≥ 1.3×)"))
    for name in filter(None, (relay, redis)):
        ratio = _ratio(medians, name, "hs_rate")
        if ratio is not None:
            out.append(Verdict("handshakes", ratio >= 1.3,
                               f"handshakes/s, {name}: {ratio:.2f}× one eventlet process "
                               f"(target ≥ 1.3×)"))
    for name in filter(None, (relay, redis)):
        ratio = _ratio(medians, name, "hs_one_rate")
        if ratio is not None:
            out.append(Verdict("one_source", ratio >= 1.3,
                               f"handshakes/s from one source address, {name}: {ratio:.2f}× "
                               f"one eventlet process (target ≥ 1.3×)"))
    for name in filter(None, (relay, redis)):
        cost = medians[name].get("hs_master_us")
        if cost is not None:
            at = medians[name]["hs_rate"]
            share = medians[name]["hs_master_share"]
            out.append(Verdict("master", cost * 2500 / 1e6 <= 0.10,
                               f"master CPU, {name}: {cost:.0f} µs per handshake = "
                               f"{cost * 2500 / 1e4:.1f} % of a core at 2,500 handshakes/s "
                               f"({share * 100:.1f} % measured at {at:,.0f}/s; target ≤ 10 %)"))
    for name in filter(None, (relay, redis)):
        p99 = medians[name].get("bcast_p99")
        if p99 is not None:
            out.append(Verdict("broadcast", p99 <= 10,
                               f"cross-worker broadcast to 200 clients, {name}: "
                               f"p99 {p99:.1f} ms (target ≤ 10 ms)"))
    growth = {n: m["master_rss_growth_kb"] for n, m in medians.items()
              if "master_rss_growth_kb" in m and not n.startswith(("standalone", "nginx"))}
    if growth:
        worst = max(growth, key=growth.get)
        out.append(Verdict("rss", growth[worst] < 1024,
                           f"master RSS growth from 0 to the idle clients: "
                           f"{growth[worst]:.0f} KB at most ({worst}; target < 1 MB)"))
    for name in filter(None, (relay, redis)):
        ratio = _ratio(medians, name, "mem_per_client_kb")
        if ratio is not None:
            out.append(Verdict("memory", ratio <= 1.05,
                               f"memory per idle client, {name}: "
                               f"{medians[name]['mem_per_client_kb']:.1f} KB = "
                               f"{ratio:.2f}× one eventlet process (target ≤ 1.05×)"))
    return out + asyncio_verdicts(medians) + threading_verdicts(medians)


def handoff_verdicts(medians: Medians, version: str) -> list[Verdict]:
    """The master's µs per hand-off of this tree against version ``version``, same run."""
    out = []
    for name in _cluster_names(medians, "relay"):
        ours = medians[name].get("hs_master_us")
        theirs = medians.get(f"{name}@{version}", {}).get("hs_master_us")
        if ours is not None and theirs is not None:
            ratio = ours / theirs
            out.append(Verdict("handoff", ratio <= HANDOFF_NOISE,
                               f"master µs per hand-off, {name}: {ours:.0f} µs, {theirs:.0f} µs "
                               f"at {version}: {ratio:.2f}× (no regression: ≤ "
                               f"{HANDOFF_NOISE:.2f}×, the spread of one version's runs)"))
    return out


def asyncio_verdicts(medians: Medians) -> list[Verdict]:
    """The asyncio worker's targets (issue 11), against one uvicorn process of the same app."""
    out = []
    redis = _two_or_best(medians, "asyncio-redis")
    if redis:
        ratios = [_ratio(medians, redis, f"echo{n}_rate") for n in (100, 1000)]
        if None not in ratios:
            out.append(Verdict("asyncio echo", min(ratios) >= 1.6,
                               f"echo, asyncio workers, Redis, {redis}: {ratios[0]:.2f}× at 100 "
                               f"clients, {ratios[1]:.2f}× at 1,000 clients of one uvicorn "
                               f"process (target ≥ 1.6×)"))
    for name in filter(None, (_two_or_best(medians, "asyncio-relay"), redis)):
        ratio = _ratio(medians, name, "hs_rate")
        if ratio is not None:
            out.append(Verdict("asyncio handshakes", ratio >= 1.0,
                               f"handshakes/s, {name}: {ratio:.2f}× one uvicorn process "
                               f"(target ≥ 1.0×)"))
        ratio = _ratio(medians, name, "mem_per_client_kb")
        if ratio is not None:
            out.append(Verdict("asyncio memory", ratio <= 1.05,
                               f"memory per idle client, {name}: "
                               f"{medians[name]['mem_per_client_kb']:.1f} KB = {ratio:.2f}× one "
                               f"uvicorn process (target ≤ 1.05×)"))
    return out


def threading_verdicts(medians: Medians) -> list[Verdict]:
    """The threading worker's target (issue 17), against one ``gunicorn -k gthread -w 1
    --threads 100`` process of the same app."""
    out = []
    for name in filter(None, (_two_or_best(medians, "threading-relay"),
                              _two_or_best(medians, "threading-redis"))):
        ratios = {n: _ratio(medians, name, f"echo{n}_rate") for n in (100, 1000)}
        known = [ratio for ratio in ratios.values() if ratio is not None]
        if known:
            said = [f"{ratio:.2f}× at {n:,} clients" if ratio is not None else
                    f"at {n:,} clients none (one gthread process holds 100 websockets)"
                    for n, ratio in ratios.items()]
            out.append(Verdict("threading echo", min(known) >= 1.3,
                               f"echo, threading workers, {name}: {', '.join(said)} of one "
                               f"gunicorn gthread process (target ≥ 1.3×)"))
    return out


# ------------------------------------------------------------------ the machine

def _version(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "not installed"
    return (done.stdout + done.stderr).strip().splitlines()[0]


def machine() -> list[tuple[str, str]]:
    """What the numbers were measured on."""
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    libs = ", ".join(f"{lib} {importlib.metadata.version(lib)}" for lib in
                     ("python-socketio", "python-engineio", "eventlet", "redis", "psutil"))
    return [("CPUs (`nproc`)", str(os.cpu_count())), ("CPU model", model),
            ("kernel", platform.release()), ("Python", platform.python_version()),
            ("libraries", libs), ("redis-server", _version(["redis-server", "--version"])),
            ("nginx", _version(["nginx", "-v"]))]


# ------------------------------------------------------------------ markdown

def _fmt(value: float | None, digits: int = 0) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def _with_ratio(medians: Medians, name: str, key: str, digits: int = 0) -> str:
    value = medians[name].get(key)
    if value is None:
        return "–"
    ratio = _ratio(medians, name, key)
    own_base = name in (BASE, ASYNCIO_BASE, THREADING_BASE)
    return _fmt(value, digits) + ("" if own_base or ratio is None else f" ({ratio:.2f}×)")


def _pair(medians: Medians, name: str, first: str, second: str, digits: int = 1) -> str:
    m = medians[name]
    if first not in m:
        return "–"
    return f"{_fmt(m[first], digits)} / {_fmt(m.get(second), digits)}"


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f} %"


def table(medians: Medians, labels: dict[str, str]) -> list[str]:
    order = [n for n in labels if n in medians]
    lines = [
        "| target | handshakes/s | handshakes/s, one source address | echo 100: msg/s | p50 / p99 ms | echo 1,000: msg/s | "
        "p50 / p99 ms | broadcast 200: p50 / p99 ms | memory per idle client, KB (PSS) | "
        "all processes at the idle clients, MB |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name in order:
        m = medians[name]
        lines.append(
            f"| {labels[name]} | {_with_ratio(medians, name, 'hs_rate')} | "
            f"{_with_ratio(medians, name, 'hs_one_rate')} | "
            f"{_with_ratio(medians, name, 'echo100_rate')} | "
            f"{_pair(medians, name, 'echo100_p50', 'echo100_p99')} | "
            f"{_with_ratio(medians, name, 'echo1000_rate')} | "
            f"{_pair(medians, name, 'echo1000_p50', 'echo1000_p99')} | "
            f"{_pair(medians, name, 'bcast_p50', 'bcast_p99', 2)} | "
            f"{_with_ratio(medians, name, 'mem_per_client_kb', 1)} | "
            f"{_fmt(m.get('mem_total_mb'))} |")
    lines += ["", "CPU, in cores (1.0 = one core busy). The master of sticky-cluster is shown "
              "alone; the load generator runs on the same machine.", "",
              "| target | master: µs per handshake | master during handshakes | master during "
              "echo 1,000 | master during broadcast | master RSS, MB (growth, KB) | "
              "load generator: handshakes / echo 100 / echo 1,000 | others' processes |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name in order:
        m = medians[name]
        master = "hs_master_us" in m
        lines.append(
            f"| {labels[name]} | {_fmt(m.get('hs_master_us')) if master else '–'} | "
            f"{_percent(m.get('hs_master_share')) if master else '–'} | "
            f"{_percent(m.get('echo1000_master')) if master else '–'} | "
            f"{_percent(m.get('bcast_master')) if master else '–'} | "
            + (f"{_fmt(m.get('master_rss_mb'), 1)} ({_fmt(m.get('master_rss_growth_kb'))})"
               if master and "master_rss_mb" in m else "–")
            + f" | {_fmt(m.get('hs_loadgen'), 2)} / {_fmt(m.get('echo100_loadgen'), 2)} / "
              f"{_fmt(m.get('echo1000_loadgen'), 2)} | {_fmt(m.get('foreign'), 2)} |")
    return lines


HAND_WRITTEN = "<!-- written by hand: bench/report.py keeps this line and what follows -->"
"""Where the hand-written end of benchmarks.md begins (e.g. a regression's figures against
an older version), which every run keeps below what it writes."""


def hand_written(path: Path) -> list[str]:
    """The lines of ``path`` from :data:`HAND_WRITTEN` on; none when there is no such line."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    start = text.find(HAND_WRITTEN)
    return text[start:].rstrip("\n").split("\n") + [""] if start >= 0 else []


def write(out_dir: Path, medians: Medians, samples: dict[str, Any], labels: dict[str, str],
          verdicts_: list[Verdict], failures: list[str], plan: Any, command: str,
          minutes: float, measured_at: str) -> None:
    """Write benchmarks.md and benchmarks.png into ``out_dir``."""
    chart(out_dir / "benchmarks.png", medians, labels)
    lines = [
        "# Benchmarks", "",
        f"Measured {measured_at} with `{command}` ({minutes:.1f} min). Medians of {plan.rounds} "
        f"round{'s' * (plan.rounds > 1)}; every target is started fresh in each round, in a "
        "rotating order; ratios are against the one eventlet process of the same run. "
        "Server and load generator share the machine, over loopback.", "",
        "| machine | |", "| --- | --- |",
        *(f"| {key} | {value} |" for key, value in machine()), "",
        "![benchmarks](benchmarks.png)", "",
        *table(medians, labels), "",
        "## Targets", "",
        *(f"- {'**met**' if v.met else '**not met**'}: {v.text}" for v in verdicts_), "",
        *_reasons(verdicts_),
        "## What is measured", "",
        f"- **handshakes/s**: new TCP connections (50 in flight, from 200 loopback source "
        f"addresses), each an Engine.IO polling handshake, `Connection: close`; "
        f"{plan.warmup:g} s warm-up, {plan.seconds:g} s measured. Run last on each fresh "
        "target: every handshake leaves a session behind for 45 s.",
        "- **handshakes/s, one source address**: the same, every connection from 127.0.1.1, "
        "as clients behind one NAT, corporate proxy or CGNAT look to the server; on a target "
        "started anew.",
        f"- **echo**: N websocket clients, each from its own source address, in a closed loop: "
        f"`emit('echo')`, the server emits back to the sender's sid, wait, again. "
        f"{plan.seconds:g} s measured; round trip p50/p99.",
        "- **broadcast**: 200 clients in one room, spread over the workers; one more client "
        "emits 20 times a second; the server emits to the room; latency from send to each "
        "receipt (one clock, one machine).",
        f"- **memory**: {plan.idle_clients:,} idle websocket clients; the growth of the sum of "
        "PSS of every server process (master and workers; the two backends and nginx), divided "
        "by the clients. The master's RSS is read before and while they are connected.",
        "- **master CPU**: `psutil` CPU times (user + system) of the master alone over the "
        "handshake run, divided by the handshakes: the cost of one hand-off, whatever the rate.",
        f"- The load generator (`bench/loadgen.py`, asyncio, {plan.loadgen_procs} processes) "
        "runs on the same cores: its CPU share is in the second table.",
        "- **others' processes**: the machine is shared. Each measurement compares the CPU "
        "the whole machine used with what ours (servers, Redis, load generator) used. Each "
        "one waits (90 s at most) until others use under 0.25 core; when they took more "
        "meanwhile, it is taken again (3 times at most, the quietest kept). The column shows "
        "the worst kept, in cores.",
        "- **nginx** (when installed): `ip_hash` in front of two `bench.standalone` processes "
        "whose Server has python-socketio's `RedisManager`, which publishes every emit, the "
        "echo back to the sender included. `ip_hash` keys an IPv4 client by its first three "
        "octets: the handshakes' 200 sources (one /24) all go to one backend, the echo "
        "clients (254 per /24) to one or two.",
    ]
    if failures:
        lines += ["", "## Failed measurements", "", *(f"- {f}" for f in failures)]
    lines += ["", "## Every round", "", "```"]
    for name, metrics in samples.items():
        for key, values in sorted(metrics.items()):
            lines.append(f"{name:<12} {key:<22} " + "  ".join(f"{v:.6g}" for v in values))
    lines += ["```", "", *hand_written(out_dir / "benchmarks.md")]
    (out_dir / "benchmarks.md").write_text("\n".join(lines))


def _reasons(verdicts_: list[Verdict]) -> list[str]:
    """Why the targets this run missed were missed, once per kind."""
    kinds = list(dict.fromkeys(v.kind for v in verdicts_ if not v.met and WHY_NOT.get(v.kind)))
    if not kinds:
        return []
    return ["Why the missed ones are missed:", "",
            *(f"- *{kind}*: {WHY_NOT[kind]}" for kind in kinds), ""]


def chart(path: Path, medians: Medians, labels: dict[str, str]) -> None:
    """Four bar charts: handshakes/s, echo msg/s at 100 and 1,000 clients, broadcast p99."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in labels if n in medians]
    panels = [("hs_rate", "handshakes/s"), ("echo100_rate", "echo msg/s, 100 clients"),
              ("echo1000_rate", "echo msg/s, 1,000 clients"),
              ("bcast_p99", "broadcast p99 ms, 200 clients (lower is better)")]
    fig, axes = plt.subplots(2, 2, figsize=(12, 7.5))
    colors = ["#888888" if n == BASE else "#cc6633" if n.startswith("nginx") else
              "#3366cc" if n.startswith("relay") else "#33aa66" for n in names]
    for ax, (key, title) in zip(axes.flat, panels):
        values = [medians[n].get(key, 0.0) for n in names]
        ax.bar(range(len(names)), values, color=colors)
        ax.set_title(title, fontsize=10)
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("one eventlet process (grey) vs sticky-cluster: relay (blue), Redis (green); "
                 "nginx ip_hash (orange)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
