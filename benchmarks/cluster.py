"""Throughput on Redis Clusters of 1, 2 and 3 masters, with queues spread over them.

    python -m benchmarks.cluster            # 60,000 no-op jobs over 12 queues per size
    python -m benchmarks.cluster --quick    # 1,200 jobs (the smoke size)

For each size: a private cluster on loopback (no persistence), two ``leaseq worker``
processes (``redis+cluster://`` URL) serving all 12 queues, then the jobs are enqueued
and timed until every one is done. Per master it records the commands processed and the
CPU used, which shows how the load splits. Writes ``benchmarks/results/cluster.{json,md}``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import redis as syncredis
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from leaseq import JobContext, Queue
from leaseq.testing import RedisServer, WorkerProcess
from leaseq.testing._cluster import RedisClusterServers

from . import _results

RESULTS = Path(__file__).parent / "results"
QUEUES = [f"scale-{i}" for i in range(12)]
WORKERS = 2


async def noop(ctx: JobContext, payload: Any) -> None:
    """The job: nothing, so the queue's own cost is what is measured."""


HANDLERS = {"noop": noop}
"""Handlers for the worker processes (``benchmarks.cluster:HANDLERS``)."""


def node_counters(servers: list[RedisServer]) -> dict[int, tuple[int, float]]:
    """Per node: commands processed so far and CPU seconds used so far."""
    out = {}
    for server in servers:
        r = syncredis.Redis(port=server.port)
        try:
            stats, cpu = r.info("stats"), r.info("cpu")
            out[server.port] = (int(stats["total_commands_processed"]),
                                float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]))
        finally:
            r.close()
    return out


def connect(url: str) -> Any:
    """A cluster client for ``redis+cluster://`` URLs, else a plain one."""
    if url.startswith("redis+cluster://"):
        return RedisCluster.from_url(url.replace("redis+cluster://", "redis://"))
    return aioredis.Redis.from_url(url)


async def enqueue_all(url: str, jobs: int) -> None:
    client = connect(url)
    try:
        per_queue = jobs // len(QUEUES)
        async with anyio.create_task_group() as tg:
            for name in QUEUES:
                tg.start_soon(Queue(client, name).enqueue_many, "noop", [None] * per_queue)
    finally:
        await client.aclose()


async def done_count(url: str) -> int:
    client = connect(url)
    try:
        return sum([(await Queue(client, n).stats()).done for n in QUEUES])
    finally:
        await client.aclose()


def one_size(masters: int, jobs: int, logdir: Path) -> dict[str, Any]:
    """``masters`` = 0: a plain redis-server (no cluster), the baseline."""
    with contextlib.ExitStack() as stack:
        servers: list[RedisServer]
        if masters:
            cluster = stack.enter_context(RedisClusterServers(masters))
            servers, url = cluster.servers, cluster.url.replace("redis://", "redis+cluster://")
        else:
            server = stack.enter_context(RedisServer())
            servers, url = [server], server.url
        extra = [arg for name in QUEUES[1:] for arg in ("--queue", name)]
        workers = [WorkerProcess(url, "benchmarks.cluster:HANDLERS", QUEUES[0],
                                 concurrency=100, lease_timeout=30, record=False,
                                 extra_args=extra, log_path=logdir / f"worker-{masters}-{i}.log")
                   for i in range(WORKERS)]
        for w in workers:
            w.start()
        try:
            for w in workers:
                w.wait_ready()
            before = node_counters(servers)
            t0 = time.perf_counter()
            anyio.run(enqueue_all, url, jobs)
            enqueued = time.perf_counter() - t0
            while anyio.run(done_count, url) < jobs:
                time.sleep(0.05)
            seconds = time.perf_counter() - t0
            after = node_counters(servers)
        finally:
            codes = [w.terminate() for w in workers]
        assert codes == [0] * WORKERS, codes
    per_node = [{"commands": after[p][0] - before[p][0],
                 "cpu_seconds": round(after[p][1] - before[p][1], 2)} for p in sorted(after)]
    return {"masters": masters, "jobs": jobs, "seconds": round(seconds, 2),
            "enqueue_seconds": round(enqueued, 2), "jobs_per_second": round(jobs / seconds),
            "per_master": per_node,
            "busiest_master_cpu_seconds": max(n["cpu_seconds"] for n in per_node)}


def render(doc: dict[str, Any]) -> str:
    rows = doc["results"]
    lines = [
        "# Throughput on 1, 2 and 3 cluster masters", "",
        (f"`{doc['command']}` on {doc['date']} ({doc['machine']['cpus']} CPUs, Python "
         f"{doc['machine']['python']}, {doc['machine']['redis_server'].split(' sha')[0]})."),
        "",
        (f"{rows[0]['jobs']:,} no-op jobs over {len(QUEUES)} queues; {WORKERS} worker "
         "processes (concurrency 100 each) serve all queues through `redis+cluster://`; "
         "timed from the first enqueue to the last ack."),
        "",
        "| masters | jobs/s | seconds | busiest master: CPU s | commands per master |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        commands = " / ".join(f"{n['commands']:,}" for n in r["per_master"])
        label = r["masters"] or "plain redis-server (no cluster)"
        lines.append(f"| {label} | {r['jobs_per_second']:,} | {r['seconds']} | "
                     f"{r['busiest_master_cpu_seconds']} | {commands} |")
    plain, base = rows[0], rows[1]
    lines += [
        "",
        "## Reading it",
        "",
        ("The load spreads: with m masters each one processes about 1/m of the commands "
         "(the queues' hash tags pick the masters), and the busiest master's CPU time "
         f"falls from {base['busiest_master_cpu_seconds']} s (1 master) to "
         f"{rows[-1]['busiest_master_cpu_seconds']} s (3 masters). Throughput does not "
         "rise with masters on this machine: its 2 cores also run the two Python worker "
         "processes, which are the bottleneck while every redis-server is mostly idle, "
         "so differences between the cluster rows measure the workers' side (more "
         "connections and idle waits per worker as the calls spread over more nodes), "
         "not Redis. Adding masters buys headroom on the Redis side, which turns into "
         "throughput once the workers run on more cores or machines than one master "
         "can serve."),
        "",
        (f"The first row is the same run on a plain redis-server: {plain['jobs_per_second']:,} "
         f"jobs/s against {base['jobs_per_second']:,} on a 1-master cluster "
         f"({base['jobs_per_second'] / plain['jobs_per_second']:.2f}x). What the cluster "
         "client costs the workers: a claim takes one more round trip and carries its "
         "candidates' job and lease keys (every key a script touches must be declared, "
         "or a slot migration can break a claim halfway; `docs/protocol.md`), and "
         "redis-py's cluster client does more per call. The ack used to cost far more "
         "(a 1-master cluster ran at 2,551 jobs/s against 9,180 on a plain server): "
         "redis-py's asyncio cluster transactions run each command in a new thread with "
         "its own event loop and block the caller's loop, so leaseq sends its ack "
         "transaction on one connection to the slot's master itself (`leaseq/protocol/tx.py`)."),
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke size")
    parser.add_argument("--dir", default=str(RESULTS), help="results directory")
    args = parser.parse_args()
    jobs = 1_200 if args.quick else 60_000
    started = time.time()
    results = []
    with tempfile.TemporaryDirectory(prefix="leaseq-bench-") as logdir:
        for masters in (0, 1, 2, 3):
            row = one_size(masters, jobs, Path(logdir))
            print(json.dumps(row))
            results.append(row)
    stem = "cluster-quick" if args.quick else "cluster"
    _results.write("benchmarks.cluster", stem, results, started, args.dir, render)
    return 0


if __name__ == "__main__":
    sys.exit(main())
