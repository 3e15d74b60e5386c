"""Example: the seed's QUIT message. A producer enqueues work and then one ``quit`` job
per worker; a worker that runs ``quit`` stops gracefully after its running jobs, and
the task group ends when every worker has quit.

    python examples/graceful_quit.py --redis redis://localhost:6379/0 --workers 3
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import anyio
import redis.asyncio as aioredis

from leaseq import JobContext, Queue, Worker


async def main(redis_url: str, workers: int, jobs: int) -> None:
    client = aioredis.Redis.from_url(redis_url)
    q = Queue(client, "quit-demo")
    fleet: list[Worker] = []

    async def square(ctx: JobContext, n: int) -> int:
        return n * n

    def make_quit(index: int) -> Any:
        async def quit_(ctx: JobContext, payload: Any) -> str:
            me = fleet[index]
            if me.stopping:
                # This worker took two QUITs in one batch: pass the spare one on.
                await ctx.queue.enqueue("quit", None)
                return f"worker {index} passed a QUIT on"
            me.stop()  # graceful: finishes what it runs, claims nothing more
            return f"worker {index} quit"
        return quit_

    fleet.extend(Worker(q, {"square": square, "quit": make_quit(i)}, reaper=(i == 0))
                 for i in range(workers))
    ids = await q.enqueue_many("square", list(range(jobs)))
    async with anyio.create_task_group() as tg:
        for w in fleet:
            tg.start_soon(lambda w=w: w.run(handle_signals=False))
        results = [await q.wait(job_id, timeout=60) for job_id in ids]
        await q.enqueue_many("quit", [None] * workers)
    print(f"{len(results)} squares, sum {sum(results)}; all {workers} workers quit")
    await client.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--redis", default=os.environ.get("LEASEQ_REDIS_URL",
                                                          "redis://localhost:6379/0"))
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=200)
    args = parser.parse_args()
    anyio.run(main, args.redis, args.workers, args.jobs)
