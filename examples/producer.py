"""Example producer: a work pool of sums, mapped and reduced.

    python examples/producer.py --redis redis://localhost:6379/0 --queue demo --jobs 1000

Enqueues ``--jobs`` sums (a, b) with ``Queue.map`` and waits for their results, in input
order; then keeps feeding slow jobs if ``--forever`` is given (docker-compose does).
"""

from __future__ import annotations

import argparse
import os
import random

import anyio
import redis.asyncio as aioredis

from leaseq import Queue


async def main(args: argparse.Namespace) -> None:
    client = aioredis.Redis.from_url(args.redis)
    try:
        q = Queue(client, args.queue)
        pairs = [{"a": random.randint(0, 1000), "b": random.randint(0, 1000)}
                 for _ in range(args.jobs)]
        sums = await q.map("add", pairs, timeout=args.timeout)
        assert sums == [p["a"] + p["b"] for p in pairs]
        print(f"{len(sums)} sums done, total {sum(sums)}")
        i = 0
        while args.forever:
            await q.enqueue_many("work", [{"i": i + k, "ms": random.randint(5, 50)}
                                          for k in range(50)])
            i += 50
            await anyio.sleep(1)
    finally:
        await client.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--redis", default=os.environ.get("LEASEQ_REDIS_URL",
                                                          "redis://localhost:6379/0"))
    parser.add_argument("--queue", default="demo")
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--forever", action="store_true")
    anyio.run(main, parser.parse_args())
