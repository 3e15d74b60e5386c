"""BullMQ's Python port: ``python bullmq_adapter.py MODE URL N [CONCURRENCY]`` (the second
peers' virtualenv; see ``_clock.py`` for the modes). CONCURRENCY is the worker's
``concurrency`` (default 1)."""

from __future__ import annotations

import asyncio
from typing import Any

from bullmq import Queue, Worker

from _clock import produce, ready, start

args = start()
clock = args.clock()
done = asyncio.Event()


async def process(job: Any, token: str) -> None:
    if clock.tick(job.data["stamp"]):
        done.set()


async def main() -> None:
    queue = Queue("bench", {"connection": args.url})
    if args.mode == "produce":
        await produce(lambda stamp: queue.add("noop", {"stamp": stamp}), args.n)
        await queue.close()
        return
    if args.mode == "drain":
        for offset in range(0, args.n, 1000):
            await queue.addBulk([{"name": "noop", "data": {"stamp": 0}}
                                 for _ in range(min(1000, args.n - offset))])
        ready()
        clock.go()
    options = {} if args.concurrency is None else {"concurrency": args.concurrency}
    worker = Worker("bench", process, {"connection": args.url, **options})
    await done.wait()
    clock.report("bullmq", concurrency=worker.opts["concurrency"])
    await worker.close()
    await queue.close()


asyncio.run(main())
