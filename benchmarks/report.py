"""Turn ``benchmarks/results/latest.json`` into ``latest.md``: ``python -m benchmarks.report``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from ._speed import DRIFT, off
from .peers.systems import LEASEQ, LEASEQ_UVLOOP

RESULTS = Path(__file__).parent / "results"

Target = tuple[str, str, str, bool | None]
"""(target, measured, ratio, met); ``None``: not measured in this run."""

DRAINS = """
## Drains side by side

N no-op jobs are enqueued, then one worker process drains them. **jobs/s**: from the first
handler call to the last. **Worker CPU**: the worker process's user + sys CPU over the
drain, per job; **worker busy**: that CPU over the drain's wall time (100 %: one core,
all the time). **Redis CPU** (`used_cpu_sys` + `used_cpu_user`) and **commands**
(`total_commands_processed`, which counts the commands scripts run) are read from `INFO`
around the drain, per job, and so are **Redis reads** (`total_reads_processed`: the read
events on client sockets, about one per round trip whatever the client, more for a
request over Redis's 16 KiB read buffer). **Client round trips**: counted by the client,
where the adapter can (the bare loop, leaseq). **p50/p99**: enqueue→start latency of the
library's default worker (next section), on its default row. **Others**: the cores the
rest of the machine kept busy meanwhile (a run above 0.25 is run again, twice at most,
the quietest kept). **Speed**: the machine's speed just before the row ran (a fixed
unit of Python work, timed; `benchmarks/_speed.py`), as a share of the run's median
reading; in bold when it is more than 10 % away from it.

| system | concurrency | jobs | jobs/s | worker CPU µs/job | worker busy | Redis CPU µs/job \
| Redis commands/job | Redis reads/job | client round trips/job | p50 ms | p99 ms | others \
| speed |
|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"""

LATENCY = """
## Enqueue→start latency

An idle worker process at the library's defaults; a producer process enqueues one job
every 5 ms, awaiting each, the job carrying its enqueue time (CLOCK_MONOTONIC, which the
machine's processes share); the handler's first act records its start. *(backlog)*: the
worker started fewer jobs per second than were enqueued. **Redis CPU, commands and
reads per job**: from `INFO` around the run, over the jobs enqueued: the producer's
enqueues, the worker's claims and acks, and whatever the idle worker does meanwhile.

| system | concurrency | samples | p50 ms | p99 ms | max ms | enqueued/s | started/s \
| Redis CPU µs/job | Redis commands/job | Redis reads/job | others | speed |
|---|---|---|---|---|---|---|---|---|---|---|---|---|"""


def _fmt(x: Any, digits: int = 0) -> str:
    return f"{x:,.{digits}f}" if isinstance(x, (int, float)) else str(x)


def _rows(r: dict[str, Any], case: str) -> list[dict[str, Any]]:
    found = r.get(case)
    return found.get("rows", []) if isinstance(found, dict) else []


def _ran(row: dict[str, Any]) -> bool:
    return "jobs_per_s" in row and "error" not in row


def _best(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    ran = [x for x in rows if _ran(x)]
    return max(ran, key=lambda x: x["jobs_per_s"]) if ran else None


def _latencies(r: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every system's enqueue-to-start run, by name."""
    out = dict(r.get("latency", {}))
    peers = r.get("peers")
    if isinstance(peers, dict):
        out.update(peers.get("latency", {}))
    return out


def _setting(row: dict[str, Any]) -> str:
    """How a leaseq drain row ran: its concurrency, and uvloop if it ran on it."""
    loop = ", uvloop" if row["name"] == LEASEQ_UVLOOP.name else ""
    return f"concurrency {row['concurrency']}{loop}"


def _ratio_row(target: str, mine: float | None, theirs: float | None, measured: str,
               bound: float, higher_is_better: bool = True) -> Target:
    if mine is None or theirs is None or theirs <= 0:
        return (target, measured or "not measured", "", None)
    ratio = mine / theirs
    met = ratio >= bound if higher_is_better else ratio <= bound
    return (target, measured, f"{ratio:.2f}×", met)


def targets(r: dict[str, Any]) -> list[Target]:
    """The targets whose inputs ran, each a ratio of two numbers measured in this run."""
    rows: list[Target] = []
    floor = _best(_rows(r, "floor"))
    drain_rows = _rows(r, "drain")
    leaseq = _best(drain_rows)
    default = next((x for x in drain_rows
                    if x["name"] == LEASEQ.name and x.get("default") and _ran(x)), None)
    lat = _latencies(r)
    lat_floor = lat.get("bare loop", {})
    lat_leaseq = lat.get("leaseq", {})
    peers = [x for x in _rows(r, "peers") if _ran(x)]

    if floor and leaseq:
        rows.append(_ratio_row(
            "leaseq drain ≥ 1.5× the bare loop at its best concurrency",
            leaseq["jobs_per_s"], floor["jobs_per_s"],
            (f"{_fmt(leaseq['jobs_per_s'])}/s ({_setting(leaseq)}) vs "
             f"{_fmt(floor['jobs_per_s'])}/s ({floor['concurrency']} coroutines)"), 1.5))
        rows.append(_ratio_row(
            "Redis CPU per drained job ≤ the bare loop's",
            leaseq["redis_cpu_us_per_job"], floor["redis_cpu_us_per_job"],
            (f"{leaseq['redis_cpu_us_per_job']:.1f} µs vs "
             f"{floor['redis_cpu_us_per_job']:.1f} µs"), 1.0, higher_is_better=False))
    if "p50_ms" in lat_floor and "p50_ms" in lat_leaseq:
        rows.append(_ratio_row(
            "enqueue→start p50 ≤ 1.5× the bare loop's", lat_leaseq["p50_ms"],
            lat_floor["p50_ms"],
            f"{lat_leaseq['p50_ms']:.2f} ms vs {lat_floor['p50_ms']:.2f} ms", 1.5,
            higher_is_better=False))
        rows.append(_ratio_row(
            "enqueue→start p99 ≤ 2× the bare loop's", lat_leaseq["p99_ms"],
            lat_floor["p99_ms"],
            f"{lat_leaseq['p99_ms']:.2f} ms vs {lat_floor['p99_ms']:.2f} ms", 2.0,
            higher_is_better=False))
    if "enqueue" in r:
        e = r["enqueue"]
        rows.append(_ratio_row(
            "single enqueue ≥ 0.9× a bare awaited LPUSH", e["enqueue_per_s"],
            e["bare_lpush_per_s"],
            f"{_fmt(e['enqueue_per_s'])}/s vs {_fmt(e['bare_lpush_per_s'])}/s", 0.9))
        rows.append(_ratio_row(
            "enqueue_many ≥ 100,000 jobs/s", e["enqueue_many_per_s"], 100_000,
            f"{_fmt(e['enqueue_many_per_s'])}/s", 1.0))
    if default and leaseq:
        rows.append(_ratio_row(
            "default Worker(queue, handlers) within 15% of leaseq's best configuration",
            default["jobs_per_s"], leaseq["jobs_per_s"],
            (f"{_fmt(default['jobs_per_s'])}/s (concurrency {default['concurrency']}) vs "
             f"{_fmt(leaseq['jobs_per_s'])}/s ({_setting(leaseq)})"), 0.85))
    if peers and leaseq:
        top = max(peers, key=lambda x: x["jobs_per_s"])
        rows.append(_ratio_row(
            "leaseq drain ≥ 1.5× the fastest peer (BullMQ on Node included)",
            leaseq["jobs_per_s"], top["jobs_per_s"],
            (f"{_fmt(leaseq['jobs_per_s'])}/s vs {top['name']} (concurrency "
             f"{top['concurrency']}) {_fmt(top['jobs_per_s'])}/s"), 1.5))
    if leaseq and "client_commands_per_job" in leaseq:
        rows.append(("Redis commands per job ≤ 3 (client-sent, amortised)",
                     (f"{leaseq['client_commands_per_job']:.2f} client / "
                      f"{leaseq['commands_per_job']:.1f} incl. script internals"),
                     f"{leaseq['round_trips_per_job']:.3f} round trips/job",
                     leaseq["client_commands_per_job"] <= 3))
    if "reaper" in r:
        worst = max(max(x["sweep_live_longest_call_ms"], x["sweep_expired_longest_call_ms"])
                    for x in r["reaper"])
        rows.append(("reaper's longest single Redis call ≤ 10 ms", f"{worst:.2f} ms", "",
                     worst <= 10))
    if "memory" in r:
        m = r["memory"]
        rows.append(("done retention keeps memory bounded over the soak",
                     (f"{m['used_memory_mb_first_sample']:.0f} MB first sample, "
                      f"{m['used_memory_mb_peak']:.0f} MB peak, {m['done_retained']:,} done kept"),
                     f"{m['soak_jobs']:,} jobs", m["done_retained"] <= 10_000))
    return rows


def _header(doc: dict[str, Any]) -> list[str]:
    m = doc["machine"]
    load = doc.get("load", {})
    out = [(f"# Benchmark results\n\nCommand: `{doc['command']}` — {doc['date']}, "
           f"{doc['seconds']} s.\n")]
    loads = ""
    if load:
        loads = (f" Load average (1, 5, 15 min) at the start "
                 f"{', '.join(f'{x:.2f}' for x in load['start'])}, at the end "
                 f"{', '.join(f'{x:.2f}' for x in load['end'])}.")
    out.append(f"Machine: {m.get('nproc', m['cpus'])} CPUs (nproc), "
               f"{m.get('cpu_model') or 'CPU model unknown'}, {m['platform']}.{loads} "
               "Redis without persistence, on loopback; every worker is one process.\n")
    versions = [f"Python {m['python']}", f"Node {m.get('node') or 'not found'}",
                m["redis_server"].split(" sha=")[0].replace("Redis server v=", "Redis "),
                f"leaseq {m['leaseq']}",
                f"redis-py {m['redis_py']}"]
    versions += [f"{p} {m[p]}" for p in ("hiredis", "anyio", "structlog") if m.get(p)]
    out.append(f"Versions: {', '.join(versions)}.")
    names = {"peers": "`benchmarks/.peers-venv`", "peers-2": "`benchmarks/.peers-venv-2`",
             "node": "`benchmarks/peers/node`"}
    for env, label in names.items():
        info = doc.get("environments", {}).get(env)
        if info is None:
            continue
        if "error" in info:
            out.append(f"- {label}: could not be set up: `{info['error']}`")
            continue
        runtime = f"Python {info['python']}" if "python" in info else f"Node {info['node']}"
        pins = ", ".join(f"{p} {v}" for p, v in info["versions"].items() if v)
        out.append(f"- {label} ({runtime}): {pins}")
    return ["\n".join(out) + "\n"]


def _cell(row: dict[str, Any], key: str, digits: int) -> str:
    return _fmt(row[key], digits) if row.get(key) is not None else "—"


def _percent(row: dict[str, Any], key: str) -> str:
    return f"{row[key]:.0%}" if row.get(key) is not None else "—"


def _others(row: dict[str, Any]) -> str:
    """The rest of the machine's busy cores during the run (and how many runs it took)."""
    text = _cell(row, "other_cpu_cores", 2)
    tries = row.get("others_by_attempt")
    return f"{text} (best of {len(tries)})" if tries else text


def _drains(r: dict[str, Any]) -> list[dict[str, Any]]:
    """Every drain row of the run: the bare loop's, leaseq's, the peers'."""
    return _rows(r, "floor") + _rows(r, "drain") + _rows(r, "peers")


def _speed(row: dict[str, Any], typical: float | None) -> str:
    """The machine's speed before the row ran, as a share of the run's median reading."""
    if not typical or not row.get("speed"):
        return "—"
    share = f"{row['speed'] / typical:.0%}"
    return f"**{share}**" if off(row["speed"], typical) else share


def _speed_line(doc: dict[str, Any], typical: float | None) -> list[str]:
    """How much the machine's own speed moved during the run; the rows it moved for."""
    speed = doc.get("speed")
    if not speed or not typical:
        return []
    line = (f"Machine speed (`benchmarks/_speed.py`, {len(speed['probes'])} readings): "
            f"median {typical:,.0f} units/s, {speed['slowest']:,.0f}–"
            f"{speed['fastest']:,.0f}.")
    r = doc["results"]
    rows = [(f"{x['name']} at {x['concurrency']}", x) for x in _drains(r)]
    rows += [(f"{name}'s latency", x) for name, x in _latencies(r).items()]
    moved = [f"{label} ({x['speed'] / typical:.0%})" for label, x in rows
             if x.get("speed") and off(x["speed"], typical)]
    if moved:
        line += (f" **Rows run more than {DRIFT:.0%} away from the median speed: "
                 f"{', '.join(moved)}; their ratios to other rows say as much about the "
                 "machine as about the systems.**")
    else:
        line += f" Every row ran within {DRIFT:.0%} of the median."
    return [line + "\n"]


def _side_by_side(r: dict[str, Any], typical: float | None) -> list[str]:
    lat = _latencies(r)
    rows = _drains(r)
    if not rows:
        return []
    out = [DRAINS]
    notes = []
    for x in rows:
        conc = f"{x['concurrency']}{' (default)' if x.get('default') else ''}"
        if "not_run" in x:
            out.append(f"| {x['name']} | {x['concurrency']} | — | not run: {x['not_run']} "
                       "| — | — | — | — | — | — | — | — | — | — |")
            continue
        if "error" in x and "jobs_per_s" not in x:
            out.append(f"| {x['name']} | {conc} | {x['jobs']:,} | failed: `{x['error']}` "
                       f"| — | — | — | — | — | — | — | — | — | {_speed(x, typical)} |")
            continue
        latency = lat.get(x["name"], {}) if x.get("default") else {}
        rate = _cell(x, "jobs_per_s", 0)
        if "error" in x:
            rate += f" ({x['error']})"
        if "exit_error" in x:
            notes.append(f"- {x['name']} at {x['concurrency']}: after its report, "
                         f"`{x['exit_error']}`")
        saturated = "*" if latency.get("saturated") else ""
        out.append(
            f"| {x['name']} | {conc} | {x['jobs']:,} | {rate} | "
            f"{_cell(x, 'worker_cpu_us_per_job', 0)} | {_percent(x, 'worker_busy')} | "
            f"{_cell(x, 'redis_cpu_us_per_job', 1)} | "
            f"{_cell(x, 'commands_per_job', 2)} | {_cell(x, 'redis_reads_per_job', 3)} | "
            f"{_cell(x, 'round_trips_per_job', 3)} | "
            f"{_cell(latency, 'p50_ms', 2)}{saturated} | {_cell(latency, 'p99_ms', 2)}{saturated} "
            f"| {_others(x)} | {_speed(x, typical)} |")
    if any(v.get("saturated") for v in lat.values()):
        notes.append("- \\*: the worker started fewer jobs per second than the producer "
                     "enqueued; its latencies measure a growing backlog.")
    return out + (["", *notes] if notes else [])


def _latency_table(r: dict[str, Any], typical: float | None) -> list[str]:
    lat = _latencies(r)
    if not lat:
        return []
    out = [LATENCY]
    for name, x in lat.items():
        if "error" in x:
            out.append(f"| {name} | {x['concurrency']} | — | failed: `{x['error']}` "
                       f"| — | — | — | — | — | — | — | — | {_speed(x, typical)} |")
            continue
        flag = " (backlog)" if x.get("saturated") else ""
        out.append(f"| {name} | {x['concurrency']} | {x['samples']:,} | {x['p50_ms']:.2f} | "
                   f"{x['p99_ms']:.2f} | {x['max_ms']:.2f} | {x['offered_per_s']:.0f} | "
                   f"{x['started_per_s']:.0f}{flag} | {_cell(x, 'redis_cpu_us_per_job', 1)} | "
                   f"{_cell(x, 'commands_per_job', 2)} | {_cell(x, 'redis_reads_per_job', 2)} | "
                   f"{_others(x)} | {_speed(x, typical)} |")
    return out


def render(doc: dict[str, Any]) -> str:
    r = doc["results"]
    typical = doc.get("speed", {}).get("median")
    out = _header(doc) + _speed_line(doc, typical)
    rows = targets(r)
    if rows:
        out.append("## Targets\n\nEach a ratio of two numbers measured in this run.\n\n"
                   "| target | measured | ratio | met |\n|---|---|---|---|")
        verdict = {True: "met", False: "not met", None: "not measured"}
        out += [f"| {t} | {mv} | {v} | {verdict[ok]} |" for t, mv, v, ok in rows]
    out += _side_by_side(r, typical)
    out += _latency_table(r, typical)
    if "scaling" in r:
        out.append("\n## Scaling (worker processes × concurrency)\n\n"
                   "| handler | processes | concurrency | jobs | jobs/s |\n|---|---|---|---|---|")
        out += [f"| {x['handler']} | {x['processes']} | {x['concurrency']} | {x['jobs']:,} | "
                f"{_fmt(x['jobs_per_s'])} |" for x in r["scaling"]]
    if "multiqueue" in r:
        out.append("\n## One worker over several queues (no-op, concurrency 100)\n\n"
                   "| queues | policy | jobs | jobs/s |\n|---|---|---|---|")
        out += [f"| {x['queues']} | {x['policy']} | {x['jobs']:,} | {_fmt(x['jobs_per_s'])} |"
                for x in r["multiqueue"]]
    if "reaper" in r:
        out.append("\n## Reaper sweeps\n\n| in-flight leases | sweep, all live (s) | longest "
                   "call (ms) | sweep, all expired (s) | longest call (ms) |\n"
                   "|---|---|---|---|---|")
        out += [f"| {x['in_flight']:,} | {x['sweep_live_s']:.3f} | "
                f"{x['sweep_live_longest_call_ms']:.2f} | {x['sweep_expired_s']:.3f} | "
                f"{x['sweep_expired_longest_call_ms']:.2f} |" for x in r["reaper"]]
    for name in ("enqueue", "memory", "recovery", "profile"):
        if name in r:
            out.append(f"\n## {name}\n\n```json\n{json.dumps(r[name], indent=2)}\n```")
    return "\n".join(out) + "\n"


def main() -> int:
    stem = sys.argv[1] if len(sys.argv) > 1 else "latest"
    doc = json.loads((RESULTS / f"{stem}.json").read_text())
    text = render(doc)
    (RESULTS / f"{stem}.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
