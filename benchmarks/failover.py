"""What a cluster master failover loses, with and without the durability knob.

    python -m benchmarks.failover               # 3 runs per case, 3,000 jobs per run
    python -m benchmarks.failover --runs 1 --jobs 200 --case knob-lag   # the smoke size

Each run builds a private 3-master cluster with a replica per master, starts a worker
(in this process) and a producer that enqueues in batches of 20 with fixed ids, SIGKILLs
the master serving the queue after a third of the jobs (with its replica in sync, or
frozen and disconnected for a second first), waits until the replica took over and the
queue drained, and counts the enqueues that returned normally but whose jobs are gone. With the knob
(``replicas=1``) it also counts the enqueues the knob reported unconfirmed. Writes
``benchmarks/results/failover.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import redis as syncredis
import structlog
from redis.asyncio.cluster import RedisCluster

from leaseq import JobContext, Queue, Worker
from leaseq.testing import RedisServerError
from leaseq.testing._cluster import RedisClusterServers
from tests.helpers.failover import FailoverProducer, run_through_fault

from . import _results

RESULTS = Path(__file__).parent / "results"
CASES = [("in sync, knob off", False, False), ("in sync, knob on", True, False),
         ("replica 1 s behind, knob off", False, True),
         ("replica 1 s behind, knob on", True, True)]
SHORT = {"sync": "in sync, knob off", "knob": "in sync, knob on",
         "lag": "replica 1 s behind, knob off", "knob-lag": "replica 1 s behind, knob on"}
"""``--case`` names of the cases (each failover costs ~10 s)."""
"""(label, durability knob, replica frozen for a second before the kill)."""


async def noop(ctx: JobContext, payload: Any) -> None:
    """The job: nothing."""


def _client_kill_replicas(port: int) -> None:
    r = syncredis.Redis(port=port)
    try:
        r.execute_command("CLIENT", "KILL", "TYPE", "replica")
    finally:
        r.close()


async def one_run(cluster: RedisClusterServers, jobs: int, knob: bool,
                  lag: bool) -> dict[str, int]:
    """One failover; with ``lag`` the replica is frozen (SIGSTOP) for a second before the
    master dies, as a replica behind a slow link would be."""
    client = RedisCluster.from_url(cluster.url)
    replicas = 1 if knob else 0
    q = Queue(client, "failover", lease_timeout=2.0, replicas=replicas, replica_timeout=0.2)
    producer = FailoverProducer(
        Queue(client, "failover", replicas=replicas, replica_timeout=0.2), jobs,
        lambda p: len(p.acknowledged) >= jobs // 3, task="noop")
    worker = Worker(q, {"noop": noop}, concurrency=20, reaper=True, reaper_interval=0.2,
                    poll_interval=0.2)

    await client.initialize()
    master = client.get_node_from_key(q.keys.todos)

    async def kill_master() -> None:
        # The slot's master as the nodes see it now, and its replica: under load a node
        # may have been failed over since the client read its slot map, or be failing
        # over now (the promoted replica is a master before the old master says it is
        # one's replica), so the pair is looked up again until it agrees.
        deadline = time.monotonic() + 20
        while True:
            port = cluster.master_now(master.port)
            try:
                replica = cluster.replica_of(port, timeout=2.0)
                break
            except RedisServerError:
                if time.monotonic() > deadline:
                    raise
        if lag:
            # Frozen and cut off: the master's later writes stay in its backlog (a
            # frozen replica alone would still find them in its socket buffer).
            replica.signal(signal.SIGSTOP)
            _client_kill_replicas(port)
            await anyio.sleep(1.0)  # the master takes writes the replica misses
        cluster.server_for(port).kill()
        if lag:
            await anyio.sleep(0.5)
            replica.signal(signal.SIGCONT)

    try:
        await run_through_fault(worker, producer, kill_master, ready_timeout=None,
                                drain_timeout=300)
        infos = await q.jobs(producer.acknowledged)
    finally:
        await client.aclose()
    lost = [job_id for job_id, info in zip(producer.acknowledged, infos, strict=True)
            if info is None or info.state != "done"]
    return {"acknowledged": len(producer.acknowledged), "lost": len(lost),
            "unconfirmed": len(producer.unconfirmed),
            "lost_but_confirmed": len(set(lost) - set(producer.unconfirmed)) if knob else -1}


def render(doc: dict[str, Any]) -> str:
    lines = [
        "# Cluster master failover: what is lost", "",
        (f"`{doc['command']}` on {doc['date']} ({doc['machine']['cpus']} CPUs, "
         f"{doc['machine']['redis_server'].split(' sha')[0]}), 3 masters + 3 replicas "
         "on loopback, the queue's master SIGKILLed after a third of the enqueues."),
        "",
        ("| case | runs | enqueues acknowledged | jobs lost | reported unconfirmed "
         "| lost although confirmed |"),
        "|---|---|---|---|---|---|",
    ]
    for key, knob, _ in CASES:
        if key not in doc["results"]:
            continue
        runs = doc["results"][key]
        total = {k: sum(r[k] for r in runs) for k in runs[0]}
        confirmed_lost = str(total["lost_but_confirmed"]) if knob else "-"
        unconf = f"{total['unconfirmed']:,}" if knob else "-"
        lines.append(f"| {key} | {len(runs)} | {total['acknowledged']:,} | {total['lost']:,} "
                     f"| {unconf} | {confirmed_lost} |")
    lines += [
        "",
        ("Without the knob, an enqueue is acknowledged when the master has it; whatever the "
         "replica had not received when the master died is gone, and nothing says so. On "
         "loopback the replication lag is well under a millisecond, so that window is "
         "small here. A replica that is behind (frozen and cut off for a second here, as "
         "behind a broken link) misses everything the master took meanwhile, and the "
         "failover loses it silently. With the knob, an enqueue returns only after a "
         "replica confirmed it or after `replica_timeout` (then it is counted in "
         "`unconfirmed_writes` and logged); the last column is the guarantee: jobs whose "
         "enqueue a replica confirmed and that are gone anyway (expected 0). After the "
         "failover the new master has no replica, so every later write is reported "
         "unconfirmed: that is the 'reported unconfirmed' column's bulk."),
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=3000)
    parser.add_argument("--dir", default=str(RESULTS), help="results directory")
    parser.add_argument("--case", action="append", choices=sorted(SHORT),
                        help="run only this case (repeatable; default: all four)")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    started = time.time()
    chosen = {SHORT[c] for c in args.case} if args.case else {key for key, _, _ in CASES}
    cases = [c for c in CASES if c[0] in chosen]
    results: dict[str, list[dict[str, int]]] = {key: [] for key, _, _ in cases}
    for _ in range(args.runs):
        for key, knob, lag in cases:
            with RedisClusterServers(3, replicas=1) as cluster:
                row = anyio.run(one_run, cluster, args.jobs, knob, lag)
            print(key, json.dumps(row), flush=True)
            results[key].append(row)
    _results.write("benchmarks.failover", "failover", results, started, args.dir, render)
    on = [r for key, knob, _ in cases if knob for r in results[key]]
    return 0 if all(r["lost_but_confirmed"] == 0 for r in on) else 1


if __name__ == "__main__":
    sys.exit(main())
