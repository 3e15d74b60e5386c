"""What the service hooks cost a drain: a worker (in this process) drains N no-op jobs from
a private redis-server with plain async handlers (the default), through a typed task,
with one no-op middleware, and with a plain ``def`` handler (threads).

    python -m benchmarks.hooks [--jobs 20000] [--rounds 3] [--base PATH]

``--base PATH`` also runs the default drain with the leaseq found in PATH (a checkout of
an earlier commit, e.g. ``git worktree add /tmp/base <commit>``), alternating with this
one round by round, so the two are compared on the same server and machine in one run.
Writes ``results/hooks.json`` and ``hooks.md``.
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

# Runs in a child process, so that each variant (and the base checkout) imports its own
# leaseq into a fresh interpreter.
CHILD = r"""
import json, sys, time
from contextlib import asynccontextmanager
import anyio, redis.asyncio as aioredis
from leaseq import Queue, Worker

url, variant, n = sys.argv[1], sys.argv[2], int(sys.argv[3])

async def noop(ctx, payload):
    return None

def sync_noop(ctx, payload):
    return None

async def main():
    client = aioredis.Redis.from_url(url)
    await client.flushall()
    q = Queue(client, "bench")
    options = {}
    handlers = {"t": noop}
    if variant == "typed":
        from leaseq import task
        async def t(ctx, x: int) -> None:
            return None
        typed = task(q, name="t")(t)
        handlers = {"t": typed}
        await typed.enqueue_many([typed.call(i) for i in range(n)])
    else:
        await q.enqueue_many("t", list(range(n)))
    if variant == "middleware":
        @asynccontextmanager
        async def nothing(ctx):
            yield
        options["middleware"] = [nothing]
    if variant == "sync":
        handlers = {"t": sync_noop}
    worker = Worker(q, handlers, concurrency=50, reaper=False, **options)
    t0 = time.perf_counter()
    await worker.run(burst=True, handle_signals=False)
    elapsed = time.perf_counter() - t0
    assert worker.counters["acked"] == n, worker.counters
    await client.aclose()
    print(json.dumps({"jobs_per_s": n / elapsed}))

anyio.run(main)
"""


def drain(url: str, variant: str, n: int, path: str | None) -> float:
    env = dict(os.environ)
    if path is not None:
        env["PYTHONPATH"] = path
    # `python -c` puts the working directory first on sys.path: run where the leaseq to
    # measure is.
    out = subprocess.run([sys.executable, "-c", CHILD, url, variant, str(n)], env=env,
                         cwd=path or Path(__file__).parent.parent, capture_output=True,
                         text=True, check=True, timeout=600)
    return float(json.loads(out.stdout.strip().splitlines()[-1])["jobs_per_s"])


def render(doc: dict[str, Any]) -> str:
    r = doc["results"]
    lines = ["# Service hooks: what they cost a drain", "",
             f"Command: `{doc['command']}` — {doc['date']}, {doc['seconds']} s.", "",
             (f"{r['jobs']} no-op jobs, concurrency 50, one worker in-process; "
              f"median of {r['rounds']} rounds, alternating."), "",
             "| drain | jobs/s (median) | rounds | vs default |", "|---|---|---|---|"]
    base = statistics.median(r["default"])
    for name, values in r.items():
        if not isinstance(values, list):
            continue
        med = statistics.median(values)
        lines.append(f"| {name} | {med:,.0f} | {', '.join(f'{v:,.0f}' for v in values)} | "
                     f"{med / base:.2f}× |")
    lines += ["", ("Rounds swing by ±10-20 % on a shared 2-core machine: read differences "
                   "within that as noise.")]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--base", default=None, help="a checkout of an earlier leaseq")
    parser.add_argument("--dir", default=str(RESULTS))
    args = parser.parse_args()
    started = time.time()
    variants = ["default", "typed", "middleware", "sync"]
    results: dict[str, Any] = {"jobs": args.jobs, "rounds": args.rounds}
    with RedisServer() as server:
        for _ in range(args.rounds):
            for variant in variants:
                results.setdefault(variant, []).append(
                    drain(server.url, variant, args.jobs, None))
            if args.base:
                results.setdefault("default, base checkout", []).append(
                    drain(server.url, "default", args.jobs, args.base))
            print({k: v[-1] for k, v in results.items() if isinstance(v, list)}, flush=True)
    _results.write("benchmarks.hooks", "hooks", results, started, args.dir, render)
    return 0


if __name__ == "__main__":
    sys.exit(main())
