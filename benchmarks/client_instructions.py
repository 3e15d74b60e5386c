"""What each step costs the Python process, in instructions: the producer or the worker
run under valgrind's callgrind, which counts the instructions it executes, nearly the
same count for the same code however busy or slow the machine is (the CPU time of a
process on a shared 2-core machine swings by more than the differences a change makes).

    python -m benchmarks.client_instructions [--jobs N] [--only CASE ...]

Per case, a child process runs the case under callgrind twice, for N and for 3N jobs
(default N = 500); the instructions per job are the difference of the two totals over
the 2N jobs between them, so the interpreter's start, the imports and the connection
set-up drop out. ``PYTHONHASHSEED=0`` for every run, so that both runs hash alike.
Cases: the bare loop (an awaited ``LPUSH`` of a job; a ``BRPOP`` and a JSON decode of
one), a single ``Queue.enqueue``, and a drain of no-op jobs by ``Worker(queue,
handlers)`` with its defaults (and by one at concurrency 200), logging at ERROR as in
``benchmarks._worker``. The Redis server runs outside valgrind. Needs ``valgrind``
(Debian: ``apt-get install valgrind``). Writes ``results/client_instructions.json`` and
``client_instructions.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import redis.asyncio as aioredis
import structlog

from leaseq import JobContext, Queue, Worker
from leaseq.testing import RedisServer

from . import _results

_JOB = b'{"task":"t","payload":null}'
CASES: list[tuple[str, str]] = [
    ("bare_lpush", "bare loop: an awaited LPUSH"),
    ("bare_brpop", "bare loop: BRPOP + JSON decode (one coroutine)"),
    ("enqueue", "Queue.enqueue, one at a time"),
    ("worker_default", "Worker(queue, handlers), defaults: a no-op job drained"),
    ("worker_200", "Worker at concurrency 200: a no-op job drained"),
]
_DRAINS = {"bare_brpop", "worker_default", "worker_200"}


async def _noop(ctx: JobContext, payload: Any) -> None:
    return None


async def _child(case: str, url: str, n: int) -> None:
    """The measured process's work (``--child``): ``n`` jobs of ``case``."""
    r = aioredis.Redis.from_url(url)
    q = Queue(r, "cins")
    if case == "bare_lpush":
        for _ in range(n):
            await r.lpush("bare", _JOB)
    elif case == "bare_brpop":
        for _ in range(n):
            _, raw = await r.brpop(["bare"], timeout=0)  # type: ignore[misc]
            json.loads(raw)
    elif case == "enqueue":
        for _ in range(n):
            await q.enqueue("t", None)
    else:
        worker = Worker(q, {"t": _noop}, reaper=False,
                        **({"concurrency": 200} if case == "worker_200" else {}))
        await worker.run(burst=True, handle_signals=False)
        if worker.counters["acked"] != n:
            raise SystemExit(f"the worker acked {worker.counters['acked']} of {n} jobs")
    await r.aclose()


async def _prepare(url: str, case: str, n: int) -> None:
    r = aioredis.Redis.from_url(url)
    await r.flushall()
    if case == "bare_brpop":
        await r.lpush("bare", *[_JOB] * n)
    elif case in _DRAINS:
        await Queue(r, "cins").enqueue_many("t", [None] * n)
    await r.aclose()


def _counted(case: str, url: str, n: int, workdir: Path) -> int:
    """The instructions of one child run of ``case`` over ``n`` jobs."""
    anyio.run(_prepare, url, case, n)
    out = workdir / f"{case}-{n}.out"
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    subprocess.run(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
         sys.executable, "-m", "benchmarks.client_instructions", "--child", case, url, str(n)],
        check=True, capture_output=True, env=env, cwd=Path(__file__).parent.parent)
    text = subprocess.check_output(["callgrind_annotate", str(out)],
                                   stderr=subprocess.DEVNULL).decode()
    found = re.search(r"([\d,]+) \(100\.0%\)\s+PROGRAM TOTALS", text)
    if found is None:
        raise RuntimeError(f"no total in {out}")
    return int(found.group(1).replace(",", ""))


def run(n: int, only: list[str] | None = None) -> dict[str, Any]:
    """Every case (or those named in ``only``), twice (``n`` and ``3n`` jobs), against
    one plain redis-server."""
    server = RedisServer()
    server.start()
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for name, label in CASES:
                if only and name not in only:
                    continue
                low = _counted(name, server.url, n, Path(tmp))
                high = _counted(name, server.url, 3 * n, Path(tmp))
                per_job = (high - low) / (2 * n)
                rows.append({"name": name, "label": label, "jobs": [n, 3 * n],
                             "instructions": [low, high], "instructions_per_job": per_job})
                print(f"{label:58s} {per_job:12,.0f} instructions/job")
    finally:
        server.stop()
    return {"rows": rows, "python": sys.version.split()[0], "valgrind": subprocess.check_output(
        ["valgrind", "--version"]).decode().strip()}


def render(doc: dict[str, Any]) -> str:
    """The Markdown report of a run."""
    res = doc["results"]
    n = res["rows"][0]["jobs"]
    lines = [
        "# Python instructions per job", "",
        f"Command: `{doc['command']}` — {doc['date']}, {doc['seconds']} s.", "",
        (f"Python {res['python']} under {res['valgrind']} (callgrind), against a "
        f"redis-server outside it. Each case ran twice in a new process, over {n[0]:,} and "
        f"{n[1]:,} jobs; the count per job is the difference over the {n[1] - n[0]:,} jobs "
        "between them, so start-up and imports drop out. The counts cover the whole "
        "process: the event loop, redis-py and hiredis, the kernel calls' user-space "
        "side (not the kernel's own work). They compare code changes that CPU time on a "
        "shared machine cannot; the worker's timers (heartbeats, statistics) run by wall "
        "time, which valgrind stretches, so they weigh a little more here than at full "
        "speed."), "",
        "| case | instructions per job |", "|---|---|",
        *(f"| {row['label']} | {row['instructions_per_job']:,.0f} |" for row in res["rows"]),
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    """``python -m benchmarks.client_instructions``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--dir", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--only", nargs="+", choices=[name for name, _ in CASES],
                        help="run these cases only")
    parser.add_argument("--child", nargs=3, metavar=("CASE", "URL", "N"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
        case, url, count = args.child
        anyio.run(_child, case, url, int(count))
        return
    for tool in ("valgrind", "callgrind_annotate"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found: install valgrind (apt-get install valgrind)")
    started = time.time()
    results = run(args.jobs, args.only)
    _results.write("benchmarks.client_instructions", "client_instructions", results, started,
                   args.dir, render)


if __name__ == "__main__":
    main()
