"""Turn ``benchmarks/results/latest.json`` into ``latest.md``: ``python -m benchmarks.report``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


def _fmt(x: Any, digits: int = 0) -> str:
    return f"{x:,.{digits}f}" if isinstance(x, (int, float)) else str(x)


def targets(r: dict[str, Any]) -> list[tuple[str, str, str, bool | None]]:
    """(target, measured, verdict text, met) rows for whatever cases ran."""
    rows: list[tuple[str, str, str, bool | None]] = []
    floor = r.get("floor", {}).get("jobs_per_s")
    drain = r.get("drain", {})
    peers = {p["name"]: p["jobs_per_s"] for p in r.get("peers", [])}
    if floor and drain:
        ratio = drain["jobs_per_s"] / floor
        rows.append(("drain ≥ bare LPUSH/BRPOP floor", (f"{_fmt(drain['jobs_per_s'])}/s vs "
                     f"{_fmt(floor)}/s"), f"{ratio:.2f}×", ratio >= 1))
    if peers and "leaseq" in peers:
        best = max((v, k) for k, v in peers.items() if k != "leaseq")
        ratio = peers["leaseq"] / best[0]
        rows.append(("drain ≥ 6× the best peer", (f"{_fmt(peers['leaseq'])}/s vs {best[1]} "
                     f"{_fmt(best[0])}/s"), f"{ratio:.1f}×", ratio >= 6))
    if "enqueue" in r:
        e = r["enqueue"]
        rows.append(("single enqueue ≥ 0.9× a bare awaited LPUSH",
                     f"{_fmt(e['enqueue_per_s'])}/s vs {_fmt(e['bare_lpush_per_s'])}/s",
                     f"{e['enqueue_vs_lpush']:.2f}×", e["enqueue_vs_lpush"] >= 0.9))
        rows.append(("enqueue_many ≥ 50,000 jobs/s", f"{_fmt(e['enqueue_many_per_s'])}/s", "",
                     e["enqueue_many_per_s"] >= 50_000))
    if "latency" in r:
        lat = r["latency"]
        rows.append(("enqueue→start p50 ≤ 0.5 ms", f"{lat['p50_ms']:.2f} ms", "",
                     lat["p50_ms"] <= 0.5))
        rows.append(("enqueue→start p99 ≤ 2 ms", f"{lat['p99_ms']:.2f} ms", "",
                     lat["p99_ms"] <= 2))
    if drain:
        rows.append(("Redis commands per job ≤ 3 (client-sent, amortised)",
                     (f"{drain['client_commands_per_job']:.2f} client / "
                     f"{drain['server_commands_per_job']:.1f} incl. script internals"),
                     f"{drain['round_trips_per_job']:.3f} round trips/job",
                     drain["client_commands_per_job"] <= 3))
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


def render(doc: dict[str, Any]) -> str:
    r = doc["results"]
    m = doc["machine"]
    out = [(f"# Benchmark results\n\nCommand: `{doc['command']}` — {doc['date']}, "
           f"{doc['seconds']} s.\n\nMachine: {m['platform']}, {m['cpus']} CPUs, Python "
           f"{m['python']}, {m['redis_server']}, redis-py {m['redis_py']}, leaseq "
           f"{m['leaseq']}. Redis without persistence, on loopback.\n")]
    rows = targets(r)
    if rows:
        out.append("## Targets\n\n| target | measured | | met |\n|---|---|---|---|")
        out += [f"| {t} | {mv} | {v} | {'yes' if ok else 'no'} |" for t, mv, v, ok in rows]
    if "peers" in r:
        out.append("\n## Drain throughput side by side (no-op jobs, one worker process, "
                   "first to last handler call)\n\n| queue | jobs | jobs/s |\n|---|---|---|")
        if "floor" in r:
            out.append(f"| bare LPUSH/BRPOP (no reliability) | {r['floor']['jobs']:,} | "
                       f"{_fmt(r['floor']['jobs_per_s'])} |")
        out += [f"| {p['name']} | {p['jobs']:,} | {_fmt(p['jobs_per_s'])} |"
                for p in r["peers"]]
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
    for name in ("drain", "enqueue", "latency", "memory", "recovery", "profile"):
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
