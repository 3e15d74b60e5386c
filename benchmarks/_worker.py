"""A benchmark worker process: ``python -m benchmarks._worker URL QUEUE CONCURRENCY KIND``.

KIND is ``noop``, ``sleep`` (awaits 10 ms), ``stamp`` (returns ``time.time()`` at start,
for enqueue-to-start latency) or ``hang`` (never returns). Runs until SIGTERM, or with
``--burst`` until the queue is drained. Logging is off: it is the hot path being measured.
"""

from __future__ import annotations

import argparse
import logging
import time
from typing import Any

import anyio
import redis.asyncio as aioredis
import structlog

from leaseq import JobContext, Queue, Worker


async def noop(ctx: JobContext, payload: Any) -> None:
    return None


async def sleep(ctx: JobContext, payload: Any) -> None:
    await anyio.sleep(0.01)


async def stamp(ctx: JobContext, payload: Any) -> float:
    return time.time()


async def hang(ctx: JobContext, payload: Any) -> None:
    await anyio.sleep(3600)


HANDLERS = {"noop": noop, "sleep": sleep, "stamp": stamp, "hang": hang}


async def main(args: argparse.Namespace) -> None:
    client = aioredis.Redis.from_url(args.url)
    queue = Queue(client, args.queue, lease_timeout=args.lease)
    worker = Worker(queue, {args.kind: HANDLERS[args.kind]}, concurrency=args.concurrency,
                    reaper=args.reaper, poll_interval=1.0)
    try:
        await worker.run(burst=args.burst)
    finally:
        await client.aclose()


if __name__ == "__main__":
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("queue")
    parser.add_argument("concurrency", type=int)
    parser.add_argument("kind", choices=sorted(HANDLERS))
    parser.add_argument("--burst", action="store_true")
    parser.add_argument("--reaper", action="store_true")
    parser.add_argument("--lease", type=float, default=30.0)
    anyio.run(main, parser.parse_args())
