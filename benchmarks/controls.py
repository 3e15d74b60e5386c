"""What the scheduling controls cost: drain, claim and enqueue, each control switched on
but not binding, against the default queue, on one private redis-server in one run.

    python -m benchmarks.controls [--quick] [--jobs N] [--rounds R] [--base PATH]

Each drain is a real ``leaseq.Worker(queue, {"t": noop})`` at its defaults (concurrency,
reaper, ...) in a fresh child process, run in burst mode over N jobs enqueued beforehand;
Redis CPU (``INFO cpu``) and commands (``INFO stats``, script-internal calls included)
are read around the drain only. The claim cost is ``claim_many(100)`` over a pre-filled
queue, server side from ``INFO commandstats`` (``evalsha`` µs per claimed job). The
enqueue cost is ``enqueue_many`` in batches of 1,000.

``--base PATH`` (default ``/tmp/bench-base`` when it exists, e.g. ``git worktree add
/tmp/bench-base 9bda3be``) also runs the default drain, claim and enqueue with the
leaseq found in PATH, interleaved round by round with the current code. Writes
``results/controls.json`` and ``controls.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from leaseq.testing import RedisServer

from . import _results

RESULTS = Path(__file__).parent / "results"
ROOT = Path(__file__).parent.parent
BASE = "/tmp/bench-base"

# (name, label): the order of the table.
DRAIN_CASES = [
    ("default", "default (set)"),
    ("fifo", "fifo"),
    ("fifo_priorities", "fifo + priorities (21 levels, random per job)"),
    ("fifo_keys", "fifo + 1,000 keys"),
    ("max_in_flight", "set + max_in_flight=10,000"),
    ("fifo_keys_key_concurrency", "fifo + 1,000 keys + key_concurrency=1,000"),
    ("rate_limit", "set + rate_limit=Rate(1,000,000, burst=1,000)"),
    ("expires_in", "set + expires_in=1 day on every job"),
    ("events", "set + events=100,000 (the lifecycle stream)"),
]
ENQUEUE_CASES = [
    ("default", "default (set)"),
    ("fifo", "fifo"),
    ("fifo_keys", "fifo + keys (one key per batch)"),
]

# Runs in a child process, so that each case (and the base checkout) imports its own
# leaseq into a fresh interpreter. Only the "default" case may run against the base
# checkout: it uses nothing the controls added.
_CHILD = r"""
import json, logging, random, sys, time
import anyio, redis.asyncio as aioredis, structlog
from redis.asyncio.connection import Connection
import leaseq
from leaseq import Queue, Worker

mode, url, case, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
KEYS = 1000


#RESP_COMMANDS


class Counting(Connection):
    commands = 0
    round_trips = 0

    def pack_command(self, *args):
        Counting.commands += 1
        return super().pack_command(*args)

    async def send_packed_command(self, command, check_health=True):
        Counting.round_trips += 1
        if isinstance(command, (bytes, bytearray)):  # packed by the caller, not redis-py
            Counting.commands += resp_commands(command)
        await super().send_packed_command(command, check_health)


async def noop(ctx, payload):
    return None


def make_queue(client):
    if case == "default":
        return Queue(client, "bench")
    options = {
        "fifo": dict(ordering="fifo"),
        "fifo_priorities": dict(ordering="fifo"),
        "fifo_keys": dict(ordering="fifo"),
        "max_in_flight": dict(max_in_flight=10_000),
        "fifo_keys_key_concurrency": dict(ordering="fifo", key_concurrency=1000),
        "rate_limit": dict(rate_limit=leaseq.Rate(1_000_000, burst=1000)),
        "expires_in": dict(),
        "events": dict(events=100_000),
    }[case]
    return Queue(client, "bench", **options)


def batches(count):
    '''(options, number of jobs) per enqueue_many call for this case.'''
    if case == "fifo_priorities":
        rng = random.Random(7)
        levels = list(range(-1000, 1001, 100))
        per = {}
        for _ in range(count):
            p = rng.choice(levels)
            per[p] = per.get(p, 0) + 1
        order = list(per)
        rng.shuffle(order)
        out = []
        for p in order:
            for start in range(0, per[p], 10_000):
                out.append(({"priority": p}, min(10_000, per[p] - start)))
        return out
    if case in ("fifo_keys", "fifo_keys_key_concurrency"):
        return [({"key": f"k{i}"}, count // KEYS + (1 if i < count % KEYS else 0))
                for i in range(KEYS) if count // KEYS + (1 if i < count % KEYS else 0)]
    extra = {"expires_in": 86_400} if case == "expires_in" else {}
    return [(extra, min(10_000, count - s)) for s in range(0, count, 10_000)]


async def fill(q, count):
    t0 = time.perf_counter()
    calls = 0
    for options, size in batches(count):
        await q.enqueue_many("t", [None] * size, **options)
        calls += 1
    return count / (time.perf_counter() - t0), calls


def cpu(info):
    return info["used_cpu_sys"] + info["used_cpu_user"]


def stats_dict(s):
    return {k: getattr(s, k) for k in ("todos", "in_progress", "done", "dead", "delayed",
                                       "expired", "waiting_on_limits", "keys_waiting",
                                       "holding", "paused") if hasattr(s, k)}


async def drain():
    pool = aioredis.ConnectionPool.from_url(url, connection_class=Counting)
    client = aioredis.Redis(connection_pool=pool)
    admin = aioredis.Redis.from_url(url)
    await admin.flushall()
    q = make_queue(client)
    enqueue_per_s, enqueue_calls = await fill(q, n)
    # Count the claims and how many a control held back (current code only).
    claims = {"calls": 0, "held_back": {}}
    original = q.claim_many

    async def counted(*args, **kwargs):
        leases = await original(*args, **kwargs)
        claims["calls"] += 1
        reason = getattr(q, "held_back", "")
        if reason:
            claims["held_back"][reason] = claims["held_back"].get(reason, 0) + 1
        return leases

    q.claim_many = counted
    worker = Worker(q, {"t": noop})
    info0 = await admin.info("cpu")
    st0 = await admin.info("stats")
    Counting.commands = Counting.round_trips = 0
    error = None
    t0 = time.perf_counter()
    try:
        with anyio.fail_after(TIMEOUT):
            await worker.run(burst=True, handle_signals=False)
    except TimeoutError:
        error = f"drain did not finish within {TIMEOUT} s"
    seconds = time.perf_counter() - t0
    client_commands, round_trips = Counting.commands, Counting.round_trips
    info1 = await admin.info("cpu")
    st1 = await admin.info("stats")
    stats = await q.stats()
    acked = worker.counters.get("acked")
    await client.aclose()
    await admin.aclose()
    out = {"jobs": n, "concurrency": worker.concurrency, "seconds": seconds,
           "jobs_per_s": n / seconds, "enqueue_per_s": enqueue_per_s,
           "enqueue_calls": enqueue_calls,
           "redis_cpu_us_per_job": (cpu(info1) - cpu(info0)) / n * 1e6,
           "commands_per_job": (st1["total_commands_processed"]
                                - st0["total_commands_processed"] - 1) / n,
           "client_commands_per_job": client_commands / n,
           "round_trips_per_job": round_trips / n,
           "claim_calls": claims["calls"], "claims_held_back": claims["held_back"],
           "acked": acked, "stats_after": stats_dict(stats)}
    if error is None and (stats.done != n or acked != n or stats.todos or stats.in_progress
                          or stats.dead or stats.delayed):
        error = (f"drained {stats.done} of {n} (acked {acked}); left: todos {stats.todos}, "
                 f"in_progress {stats.in_progress}, dead {stats.dead}, "
                 f"delayed {stats.delayed}")
    out["error"] = error
    print(json.dumps(out))


async def claim():
    client = aioredis.Redis.from_url(url)
    await client.flushall()
    q = make_queue(client)
    await fill(q, n + 1)
    await q.claim_many(1)  # loads the scripts and the settings
    await client.config_resetstat()
    t0 = time.perf_counter()
    claimed = calls = short = 0
    held = {}
    while True:
        leases = await q.claim_many(100)
        calls += 1
        if not leases:
            break
        claimed += len(leases)
        if len(leases) < 100 and claimed < n:
            short += 1
        reason = getattr(q, "held_back", "")
        if reason:
            held[reason] = held.get(reason, 0) + 1
    wall = time.perf_counter() - t0
    cs = await client.info("commandstats")
    ev = cs.get("cmdstat_evalsha", {"usec": 0, "calls": 0})
    total = sum(int(v["usec"]) for k, v in cs.items()
                if not k.startswith(("cmdstat_info", "cmdstat_config")))
    await client.aclose()
    out = {"jobs": n, "claimed": claimed, "calls": calls, "short_claims": short,
           "held_back": held, "wall_us_per_job": wall / max(claimed, 1) * 1e6,
           "evalsha_us_per_job": int(ev["usec"]) / max(claimed, 1),
           "evalsha_calls": int(ev["calls"]),
           "server_us_per_job": total / max(claimed, 1)}
    out["error"] = None if claimed == n else f"claimed {claimed} of {n} pre-filled jobs"
    print(json.dumps(out))


async def enqueue():
    client = aioredis.Redis.from_url(url)
    await client.flushall()
    q = make_queue(client)
    await q.enqueue_many("t", [None])  # loads the scripts and the settings
    await client.config_resetstat()
    cpu0 = cpu(await client.info("cpu"))
    t0 = time.perf_counter()
    for i, start in enumerate(range(0, n, 1000)):
        options = {"key": f"k{i}"} if case == "fifo_keys" else {}
        await q.enqueue_many("t", [None] * min(1000, n - start), **options)
    seconds = time.perf_counter() - t0
    cpu1 = cpu(await client.info("cpu"))
    await client.aclose()
    print(json.dumps({"jobs": n, "batch": 1000, "jobs_per_s": n / seconds,
                      "redis_cpu_us_per_job": (cpu1 - cpu0) / n * 1e6, "error": None}))


TIMEOUT = float(sys.argv[5])
structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
anyio.run({"drain": drain, "claim": claim, "enqueue": enqueue}[mode])
"""
CHILD = _CHILD.replace(
    "#RESP_COMMANDS\n", (Path(__file__).parent / "peers" / "_resp_count.py").read_text())
"""What a measurement runs, with the RESP command counter the leaseq adapter uses."""


def child(mode: str, url: str, case: str, n: int, base: str | None, timeout: float
          ) -> dict[str, Any]:
    """One measurement in a fresh interpreter; a crash or a hang is reported, not raised."""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if base is not None:
        env["PYTHONPATH"] = base
    # `python -c` puts the working directory first on sys.path: run where the leaseq to
    # measure is.
    cwd = base or str(ROOT)
    try:
        out = subprocess.run([sys.executable, "-c", CHILD, mode, url, case, str(n),
                              str(timeout)], env=env, cwd=cwd, capture_output=True,
                             text=True, timeout=timeout + 60)
    except subprocess.TimeoutExpired as exc:
        return {"error": f"child process killed after {timeout + 60:.0f} s: "
                         f"{(exc.stderr or b'')[-2000:]!r}"}
    if out.returncode != 0:
        return {"error": f"exit {out.returncode}: {out.stderr.strip()[-3000:]}"}
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def leaseq_file(base: str | None) -> str:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if base is not None:
        env["PYTHONPATH"] = base
    return subprocess.run([sys.executable, "-c", "import leaseq; print(leaseq.__file__)"],
                          env=env, cwd=base or str(ROOT), capture_output=True, text=True,
                          check=True).stdout.strip()


def commit_of(path: str) -> str | None:
    """The commit a checkout is at (read only), or None."""
    out = subprocess.run(["git", "-C", path, "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True, check=False)
    return out.stdout.strip() or None


def spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in runs if not r.get("error")]
    out: dict[str, Any] = {"runs": runs, "failed": len(runs) - len(ok)}
    if ok:
        for field in ("jobs_per_s", "redis_cpu_us_per_job", "commands_per_job",
                      "client_commands_per_job", "round_trips_per_job", "enqueue_per_s",
                      "evalsha_us_per_job", "server_us_per_job", "wall_us_per_job"):
            if field in ok[0]:
                out[field] = spread([float(r[field]) for r in ok])
    return out


def measure(url: str, n: int, rounds: int, base: str | None, quick: bool
            ) -> dict[str, Any]:
    timeout = 60.0 if quick else 150.0
    drains: dict[str, list[dict[str, Any]]] = {}
    claims: dict[str, list[dict[str, Any]]] = {}
    enqueues: dict[str, list[dict[str, Any]]] = {}
    broken: set[tuple[str, str]] = set()  # (kind, case) stopped after a failure

    def run(kind: str, table: dict[str, list[dict[str, Any]]], name: str, case: str,
            count: int, path: str | None) -> None:
        if (kind, name) in broken:
            return
        result = child(kind, url, case, count, path, timeout)
        table.setdefault(name, []).append(result)
        if result.get("error"):
            broken.add((kind, name))
            print(f"   !! {kind} {name}: {result['error']}", flush=True)

    # Below every limit of the cases (max_in_flight=10,000 counts the warm-up claim too).
    load_start = os.getloadavg()
    claim_n = 500 if quick else 5_000
    enqueue_n = 5_000 if quick else 100_000
    for i in range(rounds):
        print(f"-- round {i + 1}/{rounds}", flush=True)
        # The base checkout and the current default alternate; the other cases follow.
        for name, _ in DRAIN_CASES:
            if name == "default" and base is not None:
                run("drain", drains, "baseline", "default", n, base)
            run("drain", drains, name, name, n, None)
            last = drains[name][-1] if name in drains else {}
            print(f"   drain {name:28} {last.get('jobs_per_s', 0):9,.0f} jobs/s  "
                  f"{last.get('redis_cpu_us_per_job', 0):6.1f} redis-µs/job  "
                  f"{last.get('commands_per_job', 0):5.2f} cmds/job"
                  + (f"   (baseline {drains['baseline'][-1].get('jobs_per_s', 0):,.0f})"
                     if name == "default" and base is not None else ""), flush=True)
        for name, _ in DRAIN_CASES:
            if name == "default" and base is not None:
                run("claim", claims, "baseline", "default", claim_n, base)
            run("claim", claims, name, name, claim_n, None)
        print("   claim µs/job (evalsha): " + ", ".join(
            f"{k} {v[-1].get('evalsha_us_per_job', 0):.1f}" for k, v in claims.items()),
            flush=True)
        for name, _ in ENQUEUE_CASES:
            if name == "default" and base is not None:
                run("enqueue", enqueues, "baseline", "default", enqueue_n, base)
            run("enqueue", enqueues, name, name, enqueue_n, None)
        print("   enqueue_many jobs/s: " + ", ".join(
            f"{k} {v[-1].get('jobs_per_s', 0):,.0f}" for k, v in enqueues.items()),
            flush=True)
    return {"jobs": n, "rounds": rounds, "claim_jobs": claim_n, "enqueue_jobs": enqueue_n,
            "loadavg_start": load_start, "loadavg_end": os.getloadavg(),
            "base": base, "base_leaseq": leaseq_file(base) if base else None,
            "base_commit": commit_of(base) if base else None,
            "current_leaseq": leaseq_file(None),
            "drain": {k: summarise(v) for k, v in drains.items()},
            "claim": {k: summarise(v) for k, v in claims.items()},
            "enqueue": {k: summarise(v) for k, v in enqueues.items()}}


def _range(s: dict[str, float], fmt: str = ",.0f") -> str:
    return f"{s['median']:{fmt}} [{s['min']:{fmt}}–{s['max']:{fmt}}]"


def render(doc: dict[str, Any]) -> str:
    r, m = doc["results"], doc["machine"]
    drains, claims, enqueues = r["drain"], r["claim"], r["enqueue"]
    lines = ["# Scheduling controls: what they cost", "",
             f"Command: `{doc['command']}` — {doc['date']}, {doc['seconds']} s.", "",
             (f"Machine: {m['cpus']} CPUs (nproc), Python {m['python']}, "
              f"{m['redis_server']}, redis-py {m['redis_py']}, {m['platform']}. "
              f"Load average (1/5/15 min) at the start "
              f"{'/'.join(f'{x:.2f}' for x in r['loadavg_start'])}, at the end "
              f"{'/'.join(f'{x:.2f}' for x in r['loadavg_end'])}."), "",
             (f"Drain: {r['jobs']:,} no-op jobs enqueued first, then one `Worker(queue, "
              f"handlers)` at its defaults (concurrency "
              f"{_first({'default': drains['default']}, 'concurrency')}, reaper on) drains "
              "them in burst mode (the base checkout at its own defaults), in "
              f"a fresh process per run; {r['rounds']} rounds, all cases one after the "
              "other in each round. Redis µs/job is `used_cpu_sys+used_cpu_user` over the "
              "drain; commands/job is `total_commands_processed` over the drain (commands "
              "scripts call included); client commands/job are those the worker sent. "
              f"Claim: `claim_many(100)` until empty over {r['claim_jobs']:,} pre-filled "
              "jobs, `evalsha` µs (INFO commandstats) per claimed job."), "",
             ("| case | drain jobs/s median [min–max] | vs current default | Redis µs/job "
              "| commands/job | client cmds/job | claim µs/job (server) | failed runs |"),
             "|---|---|---|---|---|---|---|---|"]
    ref = drains.get("default", {}).get("jobs_per_s", {}).get("median")
    base_label = f"baseline: default at {r['base']} ({r.get('base_commit') or '?'})"
    labels = [("baseline", base_label), *DRAIN_CASES]
    for name, label in labels:
        d = drains.get(name)
        if d is None:
            continue
        c = claims.get(name, {})
        if "jobs_per_s" not in d:
            lines.append(f"| {label} | **failed**: {d['runs'][-1]['error'][:300]} | | | | | "
                         f"| {d['failed']} |")
            continue
        jps = d["jobs_per_s"]
        claim_cost = (f"{c['evalsha_us_per_job']['median']:.2f}"
                      if "evalsha_us_per_job" in c else "failed" if c else "-")
        ratio = f"{jps['median'] / ref:.2f}×" if ref else "-"
        lines.append(f"| {label} | {_range(jps)} | {ratio} | "
                     f"{d['redis_cpu_us_per_job']['median']:.1f} | "
                     f"{d['commands_per_job']['median']:.2f} | "
                     f"{d['client_commands_per_job']['median']:.3f} | {claim_cost} | "
                     f"{d['failed']} |")
    base_name = r.get("base_commit") or r["base"]
    lines += ["", f"## Baseline ({base_name}) vs current, default queue", ""]
    b, cur = drains.get("baseline", {}), drains.get("default", {})
    if "jobs_per_s" in b and "jobs_per_s" in cur:
        bj, cj = b["jobs_per_s"], cur["jobs_per_s"]
        overlap = bj["min"] <= cj["max"] and cj["min"] <= bj["max"]
        lines += [
            (f"Drain, interleaved baseline/current over {r['rounds']} rounds: baseline "
             f"{_range(bj)} jobs/s, current {_range(cj)} jobs/s; current/baseline = "
             f"{cj['median'] / bj['median']:.2f}× by the medians ("
             + ("the ranges overlap: the difference is within the run-to-run spread"
                if overlap else "the ranges do not overlap") + ")."),
            "",
            "Round by round (baseline, current): " + "; ".join(
                f"{x['jobs_per_s']:,.0f} / {y['jobs_per_s']:,.0f}"
                for x, y in zip(b["runs"], cur["runs"], strict=False)
                if "jobs_per_s" in x and "jobs_per_s" in y) + " jobs/s.",
            "",
            (f"Redis per drained job: baseline {b['redis_cpu_us_per_job']['median']:.1f} µs "
             f"and {b['commands_per_job']['median']:.2f} commands, current "
             f"{cur['redis_cpu_us_per_job']['median']:.1f} µs and "
             f"{cur['commands_per_job']['median']:.2f} commands.")]
        cb, cc = claims.get("baseline", {}), claims.get("default", {})
        if "evalsha_us_per_job" in cb and "evalsha_us_per_job" in cc:
            lines.append("")
            lines.append(
                f"Claim alone (`claim_many(100)`): baseline "
                f"{_range(cb['evalsha_us_per_job'], '.2f')} µs/job server side "
                f"(wall {cb['wall_us_per_job']['median']:.1f}), current "
                f"{_range(cc['evalsha_us_per_job'], '.2f')} µs/job (wall "
                f"{cc['wall_us_per_job']['median']:.1f}).")
    else:
        lines.append("Not measured (no base checkout, or a run failed: see the JSON).")
    lines += ["", "## Claim cost alone", "",
              ("| case | evalsha µs/claimed job median [min–max] | all server µs/job | "
               "wall µs/job | claim calls | held back |"), "|---|---|---|---|---|---|"]
    for name, label in labels:
        c = claims.get(name)
        if c is None:
            continue
        if "evalsha_us_per_job" not in c:
            lines.append(f"| {label} | **failed**: {c['runs'][-1]['error'][:300]} | | | | |")
            continue
        last = c["runs"][-1]
        lines.append(f"| {label} | {_range(c['evalsha_us_per_job'], '.2f')} | "
                     f"{c['server_us_per_job']['median']:.2f} | "
                     f"{c['wall_us_per_job']['median']:.1f} | {last['calls']} | "
                     f"{last['held_back'] or '-'} |")
    lines += ["", (f"## Enqueue: `enqueue_many`, {r['enqueue_jobs']:,} jobs in batches of "
                   "1,000"), "",
              "| case | jobs/s median [min–max] | vs current default | Redis µs/job |",
              "|---|---|---|---|"]
    eref = enqueues.get("default", {}).get("jobs_per_s", {}).get("median")
    for name, label in [("baseline", base_label), *ENQUEUE_CASES]:
        e = enqueues.get(name)
        if e is None:
            continue
        if "jobs_per_s" not in e:
            lines.append(f"| {label} | **failed**: {e['runs'][-1]['error'][:300]} | | |")
            continue
        ratio = f"{e['jobs_per_s']['median'] / eref:.2f}×" if eref else "-"
        lines.append(f"| {label} | {_range(e['jobs_per_s'])} | {ratio} | "
                     f"{e['redis_cpu_us_per_job']['median']:.1f} |")
    setup = [(label, drains[name]["enqueue_per_s"]["median"],
              drains[name]["runs"][-1]["enqueue_calls"]) for name, label in DRAIN_CASES
             if "enqueue_per_s" in drains.get(name, {})]
    if setup:
        lines += ["", "The drains' own setup enqueues (batches of up to 10,000; 20 jobs per "
                  "call for the 1,000-key cases): " + "; ".join(
                      f"{label} {v:,.0f} jobs/s ({calls} calls)"
                      for label, v, calls in setup) + "."]
    lines += ["", ("Runs swing by ±10–20 % on a shared 2-core machine: read differences "
                   "within the [min–max] spread as noise.")]
    return "\n".join(lines) + "\n"


def _first(table: dict[str, Any], field: str) -> Any:
    for entry in table.values():
        for run in entry["runs"]:
            if field in run:
                return run[field]
    return "?"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke size (numbers mean "
                        "nothing)")
    parser.add_argument("--jobs", type=int, default=None,
                        help="jobs per drain (default 20,000; --quick 500)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--base", default=BASE if os.path.isdir(BASE) else None,
                        help=f"a checkout of an earlier leaseq (default {BASE} if present)")
    parser.add_argument("--dir", default=str(RESULTS))
    args = parser.parse_args()
    n = args.jobs or (500 if args.quick else 20_000)
    started = time.time()
    if args.base is not None:
        found = leaseq_file(args.base)
        if not found.startswith(str(Path(args.base).resolve())):
            raise SystemExit(f"--base {args.base} imports leaseq from {found}, not from it")
        print(f"baseline leaseq: {found}", flush=True)
    with RedisServer() as server:
        results = measure(server.url, n, args.rounds, args.base, args.quick)
    stem = "controls-quick" if args.quick else "controls"
    _results.write("benchmarks.controls", stem, results, started, args.dir, render)
    return 0


if __name__ == "__main__":
    sys.exit(main())
