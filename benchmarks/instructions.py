"""What each step costs Redis, in instructions: redis-server run under valgrind's
callgrind, which counts the instructions it executes, nearly the same count for the same
commands however busy or slow the machine is (wall time and ``INFO`` CPU on a shared
2-core machine swing by more than the differences measured here; the server's timer
work, counted too, grows a little with the time a case takes).

    python -m benchmarks.instructions [--jobs N]

Per case, N jobs (default 2,000): the instructions redis-server ran per job between a
``callgrind_control --zero`` after the set-up and a ``--dump`` at the end (the counter
covers everything the server does meanwhile: reading requests, the commands, the
scripts' Lua, replies). The bare loop's cases are the floor: a job ``LPUSH``-ed, and one
``BRPOP``-ed. leaseq's drains claim and ack in batches of 50 (``claim_many`` +
``ack_many``, what a busy worker sends) and one at a time (``claim`` + ``ack``, what an
idle worker sends per job), over jobs enqueued beforehand. Needs ``valgrind``
(Debian: ``apt-get install valgrind``). Writes ``results/instructions.json`` and
``instructions.md``.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import shutil
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import redis.asyncio as aioredis

from leaseq import Queue
from leaseq.testing import RedisServer

from . import _results

KEYS = 200
"""The keys a keyed case spreads its jobs over."""
JOB = b'{"task":"t","payload":null}'
"""The bare loop's job."""


def callgrind_total(path: str) -> int:
    """The instructions a callgrind output file counts in all."""
    text = subprocess.check_output(["callgrind_annotate", path],
                                   stderr=subprocess.DEVNULL).decode()
    found = re.search(r"([\d,]+) \(100\.0%\)\s+PROGRAM TOTALS", text)
    if found is None:
        raise RuntimeError(f"no total in {path}")
    return int(found.group(1).replace(",", ""))


def require_valgrind() -> None:
    """Exit with a one-line error unless valgrind's callgrind tools are installed."""
    for tool in ("valgrind", "callgrind_control", "callgrind_annotate"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found: install valgrind (apt-get install valgrind)")


def even_shares(n: int, parts: int) -> list[int]:
    """``n`` split into ``parts`` counts that differ by at most one, the larger first."""
    return [n // parts + (1 if i < n % parts else 0) for i in range(parts)]


async def fill_keys(q: Queue, n: int) -> None:
    """Enqueue ``n`` no-op jobs on ``q`` spread evenly over :data:`KEYS` keys, one batch
    per key."""
    for k, share in enumerate(even_shares(n, KEYS)):
        if share:
            await q.enqueue_many("t", [None] * share, key=f"k{k}")


class _CallgrindServer(RedisServer):
    """A private redis-server run under callgrind (collection on from the start)."""

    def _argv(self) -> list[str]:
        return ["valgrind", "--tool=callgrind",
                f"--callgrind-out-file={self.dir / 'callgrind.out'}", *super()._argv()]

    def _control(self, flag: str) -> None:
        assert self.process is not None
        subprocess.run(["callgrind_control", flag, str(self.process.pid)],
                       check=True, capture_output=True)

    def zero(self) -> None:
        """Start counting from here."""
        self._control("--zero")

    def count(self) -> int:
        """The instructions run since the last :meth:`zero` (a dump, read back)."""
        before = set(glob.glob(str(self.dir / "callgrind.out.*")))
        self._control("--dump")
        new = max(set(glob.glob(str(self.dir / "callgrind.out.*"))) - before,
                  key=os.path.getmtime)
        return callgrind_total(new)


Case = Callable[[aioredis.Redis, _CallgrindServer, int], Awaitable[int]]


async def _bare_lpush(r: aioredis.Redis, server: _CallgrindServer, n: int) -> int:
    server.zero()
    for _ in range(n):
        await r.lpush("bare", JOB)
    return server.count()


async def _bare_brpop(r: aioredis.Redis, server: _CallgrindServer, n: int) -> int:
    await r.lpush("bare", *[JOB] * n)
    server.zero()
    for _ in range(n):
        await r.brpop(["bare"], timeout=0)
    return server.count()


def _queue(r: aioredis.Redis, kind: str) -> Queue:
    if kind == "set":
        return Queue(r, "ins")
    if kind == "fifo_kc":
        return Queue(r, "ins", ordering="fifo", key_concurrency=1000)
    return Queue(r, "ins", ordering="fifo")


def _enqueue(kind: str, batch: int) -> Case:
    async def case(r: aioredis.Redis, server: _CallgrindServer, n: int) -> int:
        q = _queue(r, kind)
        await q.enqueue("t", None)  # scripts loaded, queue prepared
        keyed = kind in ("fifo_keys", "fifo_kc")
        server.zero()
        if batch == 1:
            for i in range(n):
                await q.enqueue("t", None, **({"key": f"k{i % KEYS}"} if keyed else {}))
        else:
            for i, start in enumerate(range(0, n, batch)):
                await q.enqueue_many("t", [None] * min(batch, n - start),
                                     **({"key": f"k{i % KEYS}"} if keyed else {}))
        return server.count()
    return case


def _drain(kind: str, batch: int) -> Case:
    async def case(r: aioredis.Redis, server: _CallgrindServer, n: int) -> int:
        q = _queue(r, kind)
        if kind in ("fifo_keys", "fifo_kc"):
            await fill_keys(q, n)
        else:
            await q.enqueue_many("t", [None] * n)
        await q.enqueue("t", None)
        warm = await q.claim()  # scripts loaded
        if warm is None:
            raise RuntimeError("the warm-up job was not claimed")
        await q.ack(warm)
        server.zero()
        done = 0
        while done < n:
            if batch == 1:
                lease = await q.claim()
                if lease is None:
                    break
                await q.ack(lease)
                done += 1
            else:
                leases = await q.claim_many(batch)
                if not leases:
                    break
                await q.ack_many([(lease, None) for lease in leases])
                done += len(leases)
        total = server.count()
        if done != n:
            raise RuntimeError(f"drained {done} of {n} jobs")
        return total
    return case


CASES: list[tuple[str, str, Case]] = [
    ("bare_lpush", "bare loop: LPUSH", _bare_lpush),
    ("bare_brpop", "bare loop: BRPOP", _bare_brpop),
    ("enqueue", "enqueue (set queue)", _enqueue("set", 1)),
    ("enqueue_many", "enqueue_many, batches of 1,000 (set queue)", _enqueue("set", 1000)),
    ("enqueue_many_fifo_keys", "enqueue_many, batches of 1,000 (fifo, a key per batch)",
     _enqueue("fifo_keys", 1000)),
    ("drain_1", "claim + ack, one at a time (set queue)", _drain("set", 1)),
    ("drain_50", "claim_many(50) + ack_many (set queue)", _drain("set", 50)),
    ("drain_50_fifo", "claim_many(50) + ack_many (fifo, one key)", _drain("fifo", 50)),
    ("drain_50_fifo_keys", f"claim_many(50) + ack_many (fifo, {KEYS} keys)",
     _drain("fifo_keys", 50)),
    ("drain_50_fifo_kc",
     f"claim_many(50) + ack_many (fifo, {KEYS} keys, key_concurrency=1,000)",
     _drain("fifo_kc", 50)),
]


async def run(n: int) -> dict[str, Any]:
    """Every case on one callgrind-run server (flushed between cases)."""
    server = _CallgrindServer()
    server.start(timeout=60)
    rows = []
    try:
        r = aioredis.Redis.from_url(server.url, socket_timeout=120)
        for name, label, case in CASES:
            await r.flushall()
            total = await case(r, server, n)
            rows.append({"name": name, "label": label, "jobs": n,
                         "instructions_per_job": total / n})
            print(f"{label:62s} {total / n:12,.0f} instructions/job")
        await r.aclose()
    finally:
        server.stop()
    return {"rows": rows, "valgrind": subprocess.check_output(
        ["valgrind", "--version"]).decode().strip()}


def render(doc: dict[str, Any]) -> str:
    """The Markdown report of a run."""
    res = doc["results"]
    m = doc["machine"]
    setup = (
        f"{m.get('redis_server', 'redis-server')} under {res['valgrind']} (callgrind); "
        f"{res['rows'][0]['jobs']:,} jobs per case. Instructions counted between a zero "
        "after each case's set-up and a dump at its end: nearly the same count for the "
        "same commands on a busy or an idle machine, so these compare code changes that "
        "wall time here cannot. The server's timer work (`serverCron`, ten times a "
        "second) is counted too, and a slower machine runs more of it per job: the bare "
        "loop's small counts moved by 13 % between two runs of the same code, leaseq's by "
        "1-2 %. Drains exclude the enqueue (as the drains of `latest.md` do).")
    kernel = (
        "Callgrind counts the server's own instructions, not the kernel's: the socket "
        "reads and writes of each round trip are not in these numbers, and they are most "
        "of what a bare `BRPOP` costs (`latest.md`: 5.1 µs of Redis CPU per job at "
        "concurrency 100, against 19.4 µs for leaseq's drain, where here the ratio of "
        "instructions is far larger). Compare leaseq's rows with each other and across "
        "runs; the bare loop's rows are there for scale.")
    lines = [
        "# Redis instructions per job", "",
        f"Command: `{doc['command']}` — {doc['date']}, {doc['seconds']} s.", "",
        setup, "", kernel, "",
        "| case | instructions per job |", "|---|---|",
        *(f"| {row['label']} | {row['instructions_per_job']:,.0f} |" for row in res["rows"]),
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    """``python -m benchmarks.instructions``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--dir", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    require_valgrind()
    started = time.time()
    results = anyio.run(run, args.jobs)
    _results.write("benchmarks.instructions", "instructions", results, started, args.dir,
                   render)


if __name__ == "__main__":
    main()
