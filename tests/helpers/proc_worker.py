"""A worker process for tests: ``python -m tests.helpers.proc_worker URL QUEUE [options]``.

Its handler ``work`` records every start and finish in Redis lists (``test:started``,
``test:finished``: ``job_id:attempt:pid``) so tests can see what ran where, sleeps for the
payload's ``sleep`` seconds and returns the payload's ``value``.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import anyio
import redis.asyncio as aioredis

from leaseq import JobContext, Queue, Worker


async def main(args: argparse.Namespace) -> None:
    client = aioredis.Redis.from_url(args.url)
    queue = Queue(client, args.queue, lease_timeout=args.lease)
    pid = os.getpid()

    async def work(ctx: JobContext, payload: Any) -> Any:
        await client.rpush("test:started", f"{ctx.job_id}:{ctx.attempt}:{pid}")
        await anyio.sleep(payload.get("sleep", 0))
        await client.rpush("test:finished", f"{ctx.job_id}:{ctx.attempt}:{pid}")
        return payload.get("value")

    worker = Worker(queue, {"work": work}, concurrency=args.concurrency, reaper=True,
                    reaper_interval=args.reaper_interval, grace_period=args.grace,
                    poll_interval=0.2)
    try:
        await worker.run()
    finally:
        await client.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("queue")
    parser.add_argument("--lease", type=float, default=1.0)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--grace", type=float, default=30.0)
    parser.add_argument("--reaper-interval", type=float, default=0.2)
    anyio.run(main, parser.parse_args())
