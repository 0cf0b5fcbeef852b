"""The scale section of docs/benchmarks.md and docs/scale.png, from :mod:`bench.scale`'s results.

The section sits between :data:`BEGIN` and :data:`END`, below the line from which
``bench.run`` keeps the end of benchmarks.md as it is (:data:`bench.report.HAND_WRITTEN`):
``bench.run`` rewrites its own part and keeps this one; ``bench.scale --write`` rewrites
this one and keeps the rest.
"""
from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from bench.report import HAND_WRITTEN, machine

BEGIN = "<!-- bench.scale writes from here -->"
END = "<!-- bench.scale writes up to here -->"

GOALS = {"dropped": 0, "memory_ratio": 1.05, "master_rss_mb": 10.0, "broadcast_p99_ms": 3000.0,
         "storm_back_s": 15.0, "storm_failures": 0, "ceiling_vs_nginx": 4.0}
"""The goals of issue 19's "Done when", each figure's bound."""


def _f(value: Any, digits: int = 0) -> str:
    if value is None:
        return "–"
    if isinstance(value, float) and digits:
        return f"{value:,.{digits}f}"
    return f"{round(value):,}"


def failed_attempts(storm: dict[str, Any]) -> str:
    """A storm's failed attempts, with what they met when any failed: ``70 (timeout 62,
    http 503 8)``."""
    kinds = storm.get("failed_by_kind") or {}
    detail = ", ".join(f"{kind} {n:,}" for kind, n in kinds.items())
    return f"{_f(storm['failed_attempts'])}" + (f" ({detail})" if detail else "")


def best_broadcast(result: dict[str, Any]) -> dict[str, Any]:
    """The broadcast of median p99 among those after the hold (the last stage's if none)."""
    shots = [b for b in result.get("broadcasts", []) if b.get("p99_ms") is not None]
    if not shots:
        return result["stages"][-1]["broadcast"] if result.get("stages") else {}
    p99 = statistics.median_low([b["p99_ms"] for b in shots])
    return next(b for b in shots if b["p99_ms"] == p99)


def one_process_of(name: str) -> str:
    return name.partition("-")[0] + "-one"


def memory_ratio(targets: dict[str, Any], name: str) -> float | None:
    """Memory per client of a cluster over that of one process of the same runtime."""
    one = targets.get(one_process_of(name), {})
    if "stages" not in one or "stages" not in targets[name]:
        return None
    return targets[name]["stages"][-1]["per_client_kb"] / one["stages"][-1]["per_client_kb"]


def after_hold(result: dict[str, Any], one: dict[str, Any]) -> str:
    """The memory per client read again at the end of the hold, against one process's at
    the end of its own (runs from before that reading have none)."""
    kb, one_kb = result["hold"].get("per_client_kb"), one["hold"].get("per_client_kb")
    if kb is None or one_kb is None:
        return ""
    return f"; at the end of the hold {kb:.1f} KB against {one_kb:.1f} ({kb / one_kb:.3f}×)"


def tables(results: dict[str, Any]) -> list[str]:
    """The markdown of the section's tables."""
    targets = {k: v for k, v in results["targets"].items() if "error" not in v}
    held = {k: v for k, v in targets.items() if k != "ceiling"}
    lines = ["| target | clients held | connect, s (per s) | memory per client, KB (PSS; × one "
             "process) | master RSS, MB (growth) | dropped in the hold | pings late / answered "
             "(longest gap, s) | CPU at idle: master / workers, cores | broadcast to all: "
             "first / p50 / p99 / max, ms (delivered) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, r in held.items():
        hold, bc = r["hold"], best_broadcast(r)
        one = name.endswith("-one")
        ratio = None if one else memory_ratio(targets, name)
        lines.append(
            f"| {r['label']} ({name}) | {_f(r['held'])} of {_f(r['clients'])} | "
            f"{_f(r['connect_seconds'], 1)} ({_f(r['held'] / max(r['connect_seconds'], 1e-9))}) | "
            f"{_f(r['stages'][-1]['per_client_kb'], 1)}"
            f"{'' if ratio is None else f' ({ratio:.2f}×)'} | "
            + ("–" if one else f"{_f(r['master_rss_before_mb'], 1)} "
                               f"({_f(r['master_rss_growth_mb'], 2)})")
            + f" | {_f(hold['dropped'])} | {_f(hold['late_pings'])} / {_f(hold['pings'])} "
              f"({_f(hold['max_ping_gap_s'], 1)}) | "
            + ("–" if one else _f(hold['master_cpu_share'], 3))
            + f" / {_f(hold['workers_cpu_share'], 3)} | {_f(bc.get('first_ms'), 1)} / "
              f"{_f(bc.get('p50_ms'), 1)} / {_f(bc.get('p99_ms'), 1)} / "
              f"{_f(bc.get('max_ms'), 1)} ({_f(bc.get('delivered'))} of "
              f"{_f(bc.get('expected'))}) |")
    storms = [(n, r) for n, r in held.items() if "kill" in r]
    if storms:
        lines += ["", "| target | kill -9 one worker: its clients | all back after, s | failed "
                  "attempts | other clients dropped | clients connected at the end | HUP: "
                  "clients closed | all back after, s | failed attempts | clients connected at "
                  "the end |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for name, r in storms:
            k, h = r["kill"], r["hup"]
            n = r["hold"]["live_after"]
            lines.append(f"| {name} | {_f(k['killed_worker_clients'])} | "
                         f"{_f(k['last_back_s'] if k['live'] >= n else None, 1)} | "
                         f"{failed_attempts(k)} | {_f(k['others_dropped'])} | "
                         f"{_f(k['live'])} of {_f(n)} | {_f(h['dropped'])} | "
                         f"{_f(h['last_back_s'] if h['live'] >= k['live'] else None, 1)} | "
                         f"{failed_attempts(h)} | {_f(h['live'])} |")
    c = targets.get("ceiling")
    if c:
        lines += ["", "| the same connections (connect, request line, close) | connections | "
                  "CPU-seconds of the process that works | per CPU-second | µs each |",
                  "| --- | ---: | ---: | ---: | ---: |"]
        for name, label in (("master", "sticky-cluster master, hand-offs in its C loop "
                                       "(workers close)"),
                            ("master_python", "the same, its Python loop "
                                              "(`STICKY_CLUSTER_PURE_PYTHON=1`)"),
                            ("nginx", "nginx `stream`, 1 worker, proxied to a sink"),
                            ("haproxy", "HAProxy `mode tcp`, 1 thread, proxied to a sink")):
            m = c.get(name, {})
            if "connections" in m:
                lines.append(f"| {label} | {_f(m['connections'])} | {_f(m['cpu_seconds'], 2)} | "
                             f"{_f(m['per_cpu_second'])} | {_f(m['us_per_connection'], 1)} |")
    return lines


def verdicts(results: dict[str, Any]) -> list[str]:
    """Each goal of the issue against this run: met or not, with the figure."""
    targets = {k: v for k, v in results["targets"].items() if "error" not in v}
    out = []

    def line(met: bool, text: str) -> None:
        out.append(f"- {'**met**' if met else '**not met**'}: {text}")

    for name, r in targets.items():
        if name == "ceiling" or name.endswith("-one"):
            continue
        hold, bc = r["hold"], best_broadcast(r)
        line(hold["dropped"] == 0 and r["held"] == r["clients"],
             f"{name}: {r['held']:,} of {r['clients']:,} clients held "
             f"{hold['seconds']:g} s, {hold['dropped']} dropped")
        ratio = memory_ratio(targets, name)
        if ratio is not None:
            one = targets[one_process_of(name)]["stages"][-1]["per_client_kb"]
            line(ratio <= GOALS["memory_ratio"], f"{name}: memory per idle client "
                 f"{ratio:.3f}× one process of the same runtime "
                 f"({r['stages'][-1]['per_client_kb']:.1f} KB against {one:.1f}; goal ≤ 1.05×)"
                 + after_hold(r, targets[one_process_of(name)]))
        line(r["master_rss_growth_mb"] < GOALS["master_rss_mb"],
             f"{name}: master RSS growth {r['master_rss_growth_mb']:.2f} MB (goal < 10)")
        if bc.get("p99_ms") is not None:
            line(bc["p99_ms"] <= GOALS["broadcast_p99_ms"] and bc["delivered"] == bc["expected"],
                 f"{name}: broadcast to all {bc['expected']:,} delivered to {bc['delivered']:,}, "
                 f"p99 {bc['p99_ms']:,.0f} ms (goal ≤ 3,000)")
        k = r.get("kill")
        if k:
            n = r["hold"]["live_after"]
            back = (f"all back after {_f(k['last_back_s'], 1)} s" if k["live"] >= n else
                    f"not all back: {k['live']:,} of {n:,} clients connected at the end")
            line(k["last_back_s"] is not None and k["last_back_s"] <= GOALS["storm_back_s"]
                 and k["failed_attempts"] == 0 and k["live"] >= n,
                 f"{name}: a killed worker held {k['killed_worker_clients']:,} clients; {back}, "
                 f"{failed_attempts(k)} failed attempts, {k['others_dropped']:,} other "
                 "clients dropped (goal: 25,000 back within 15 s, 0 failed)")
    c = targets.get("ceiling", {})
    ratio = c.get("master_vs_nginx")
    if ratio is not None:
        line(ratio >= GOALS["ceiling_vs_nginx"], f"master hand-offs per CPU-second "
             f"{ratio:.2f}× nginx's proxied connections (goal ≥ 4×); HAProxy's: "
             f"{_f(c.get('master_vs_haproxy'), 2)}× (its Python loop: "
             f"{_f(c.get('master_python_vs_nginx'), 2)}× nginx's)")
    return out


def section(results: dict[str, Any]) -> list[str]:
    """The whole section, between its markers."""
    cmd = results.get("command") or (f"python -m bench.scale --clients {results['clients']} "
                                     f"--hold {results['hold']:g} --workers {results['workers']}")
    load = results["load_average_at_start"], results["load_average_at_end"]
    return [BEGIN, "## Scale: clients held on one host (issue 19)", "",
            f"Measured {results['started']} with `{cmd}` ({results['minutes']:.0f} min; the "
            f"machine's load average {load[0][0]:.2f} at the start, {load[1][0]:.2f} at the end). "
            f"{results['procs']} load processes on the same machine.", "",
            "| machine | |", "| --- | --- |", *(f"| {k} | {v} |" for k, v in machine()), "",
            "![clients held vs memory, broadcast delivery time vs clients](scale.png)", "",
            *tables(results), "", "Against the goals of issue 19, in this run:", "",
            *verdicts(results), "", END]


def chart(path: Path, results: dict[str, Any]) -> None:
    """Two panels: PSS growth vs clients held; broadcast to all p99 and max vs clients."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (mem, bc) = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, r in results["targets"].items():
        if "stages" not in r:
            continue
        xs = [s["clients"] for s in r["stages"]]
        style = "--" if name.endswith("-one") else "-"
        mem.plot(xs, [s["pss_growth_mb"] for s in r["stages"]], style, marker="o", label=name)
        bc.plot(xs, [s["broadcast"]["p99_ms"] or 0 for s in r["stages"]], style, marker="o",
                label=f"{name} p99")
    mem.set_title("memory held (PSS growth of all server processes), MB", fontsize=10)
    bc.set_title("one broadcast to all: p99 delivery, ms (while connecting)", fontsize=10)
    for ax in (mem, bc):
        ax.set_xlabel("clients held")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write(docs: Path, results: dict[str, Any]) -> None:
    """Write docs/scale.png and the section into docs/benchmarks.md (kept by ``bench.run``)."""
    chart(docs / "scale.png", results)
    path = docs / "benchmarks.md"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    new = "\n".join(section(results))
    if BEGIN in text and END in text:
        text = text[:text.index(BEGIN)] + new + text[text.index(END) + len(END):]
    else:
        if HAND_WRITTEN not in text:
            text = text.rstrip("\n") + "\n\n" + HAND_WRITTEN
        text = text.rstrip("\n") + "\n\n" + new + "\n"
    path.write_text(text)
