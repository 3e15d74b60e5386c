"""How fast the dashboard's reads are on a big queue, against the same reads on a tiny one.

    python -m benchmarks.web            # 1,000,000 todos + 1,000,000 done + 100,000 dead
    python -m benchmarks.web --quick    # 20,000 of each (the smoke size)

Fills a private redis-server directly (SADD/ZADD/HSET in pipelines: this measures reads,
not enqueues), starts ``leaseq web`` as a process, and times each API route over kept-alive
HTTP connections (p50/p99 of ``--requests`` calls). Also records how much Redis CPU one
dashboard refresh costs. Writes ``benchmarks/results/web.{json,md}``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import redis as syncredis

from leaseq.protocol.keys import QUEUES_KEY, QueueKeys
from leaseq.testing import RedisServer, WebProcess

from . import _results

RESULTS = Path(__file__).parent / "results"
ROUTES = ("/queues", "/queues/{q}", "/queues/{q}/leases", "/queues/{q}/dead",
          "/queues/{q}/events", "/jobs/{job}")
"""``/queues/{q}`` is what one live-stream snapshot reads for the selected queue."""


def fill(r: syncredis.Redis, name: str, todos: int, done: int, dead: int,
         leases: int) -> str:
    """Put a queue of the given sizes in Redis; returns the id of one done job."""
    k = QueueKeys(name)
    r.sadd(QUEUES_KEY, name)
    now_ms = int(time.time() * 1000)
    batch = 10_000
    pipe = r.pipeline(transaction=False)
    for start in range(0, max(todos, done, dead), batch):
        if start < todos:
            pipe.sadd(k.todos, *(f"t{i}" for i in range(start, min(start + batch, todos))))
        if start < done:
            ids = range(start, min(start + batch, done))
            pipe.sadd(k.done, *(f"d{i}" for i in ids))
            # Finish times spread over the last 15 minutes, for the acks-per-minute chart.
            pipe.zadd(k.done_at, {f"d{i}": now_ms - (i * 7919) % 900_000 for i in ids})
        if start < dead:
            ids = range(start, min(start + batch, dead))
            pipe.sadd(k.dead, *(f"x{i}" for i in ids))
            for i in ids:
                pipe.hset(k.job(f"x{i}"), mapping={
                    "task": "t", "payload": "1", "attempts": 3, "max_attempts": 3,
                    "dead_reason": "failed 3 times, last error: boom",
                    "finished_at": now_ms, "enqueued_at": now_ms})
        pipe.execute()
    for i in range(leases):
        pipe.sadd(k.in_progress, f"l{i}")
        pipe.psetex(k.lease(f"l{i}"), 600_000, f"{i}-abc")
        pipe.hset(k.job(f"l{i}"), mapping={"task": "t", "payload": "1", "attempts": 1,
                                            "max_attempts": 3, "owner": "bench:1",
                                            "claimed_at": now_ms, "token": f"{i}-abc"})
    pipe.hset(k.job("d0"), mapping={"task": "t", "payload": "1", "result": "2"})
    pipe.execute()
    return "d0"


def time_route(client: httpx.Client, path: str, n: int) -> dict[str, float]:
    """p50 / p99 / max in ms of ``n`` GETs of ``path`` (after one warm-up call)."""
    assert client.get(path).status_code == 200, path
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        reply = client.get(path)
        samples.append((time.perf_counter() - t0) * 1000)
        assert reply.status_code == 200, (path, reply.text)
    samples.sort()
    return {"p50_ms": round(statistics.median(samples), 2),
            "p99_ms": round(samples[int(len(samples) * 0.99) - 1], 2),
            "max_ms": round(samples[-1], 2)}


def redis_cpu_ms(r: syncredis.Redis) -> float:
    info = r.info("cpu")
    return (float(info["used_cpu_sys"]) + float(info["used_cpu_user"])) * 1000


def run(size: int, requests: int) -> dict[str, Any]:
    out: dict[str, Any] = {"size": {"todos": size, "done": size, "dead": size // 10,
                                    "leases": 200}}
    with RedisServer() as server:
        r = syncredis.Redis.from_url(server.url)
        try:
            t0 = time.perf_counter()
            job = fill(r, "big", size, size, size // 10, 200)
            # As many rows on the page as `big` (50 leases, 50 dead): only set sizes differ.
            fill(r, "small", 100, 100, 100, 100)
            out["fill_seconds"] = round(time.perf_counter() - t0, 1)
            out["redis_used_memory_mb"] = round(r.info("memory")["used_memory"] / 2**20)
            web = WebProcess(server.url)
            web.start()
            try:
                web.wait_ready()
                with httpx.Client(base_url=web.url, timeout=30) as client:
                    for queue in ("big", "small"):
                        rows = {}
                        for route in ROUTES:
                            path = route.format(q=queue, job=job)
                            if route == "/jobs/{job}":
                                path += f"?queue={queue}"
                                if queue == "small":
                                    continue
                            rows[route] = time_route(client, path, requests)
                            print(f"{queue:6} {route:22} {rows[route]}")
                        out[queue] = rows
                    for queue in ("big", "small"):
                        cpu0 = redis_cpu_ms(r)
                        for _ in range(requests):
                            client.get("/queues")
                            client.get(f"/queues/{queue}")
                        out[f"redis_cpu_ms_per_refresh_{queue}"] = round(
                            (redis_cpu_ms(r) - cpu0) / requests, 3)
            finally:
                assert web.terminate() == 0
        finally:
            r.close()
    return out


def render(doc: dict[str, Any]) -> str:
    res = doc["results"]
    size = res["size"]
    lines = [
        "# Dashboard / HTTP API read cost", "",
        (f"`{doc['command']}` on {doc['date']} ({doc['machine']['cpus']} CPUs, "
        f"Python {doc['machine']['python']}, redis-server {doc['machine']['redis_server']})."),
        "",
        (f"Queue `big`: {size['todos']:,} todos, {size['done']:,} done (with `done_at`), "
        f"{size['dead']:,} dead jobs with hashes, {size['leases']} leases in flight "
        f"({res['redis_used_memory_mb']} MB in Redis). Queue `small`: 100 of each. Both "
        "show the same rows (50 leases, 50 dead jobs), so the columns differ only by the "
        "size of the sets."),
        ("Each route called over kept-alive connections to `leaseq web`; latency includes "
        "HTTP, JSON and the Redis round trips."),
        "Absolute numbers drift by ±20 % between runs on a shared 2-core machine.", "",
        "| route | big p50 ms | big p99 ms | small p50 ms | small p99 ms |",
        "|---|---|---|---|---|",
    ]
    for route, big in res["big"].items():
        small = res["small"].get(route)
        lines.append(f"| `{route}` | {big['p50_ms']} | {big['p99_ms']} | "
                     f"{small['p50_ms'] if small else '-'} | "
                     f"{small['p99_ms'] if small else '-'} |")
    lines += ["", (f"Redis CPU per dashboard refresh of `big` (`/queues` + `/queues/big`, "
                  f"what one live snapshot reads): {res['redis_cpu_ms_per_refresh_big']} ms; "
                  f"of `small`: {res['redis_cpu_ms_per_refresh_small']} ms."),
              "", ("Why size barely matters: counts are SCARD/ZCARD, the chart is 15 ZCOUNTs on "
              "`done_at`, leases and dead jobs are SSCAN pages stopped at the row limit "
              "(50), events are one LRANGE. Nothing reads a whole set."), ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke size")
    parser.add_argument("--requests", type=int, default=None, help="calls per route")
    parser.add_argument("--dir", default=str(RESULTS), help="results directory")
    args = parser.parse_args()
    size = 20_000 if args.quick else 1_000_000
    requests = args.requests or (20 if args.quick else 200)
    started = time.time()
    results = run(size, requests)
    stem = "web-quick" if args.quick else "web"
    _results.write("benchmarks.web", stem, results, started, args.dir, render)
    return 0


if __name__ == "__main__":
    sys.exit(main())
