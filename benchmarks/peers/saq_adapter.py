"""SAQ: ``python saq_adapter.py URL N`` (run in the peers' virtualenv)."""

from __future__ import annotations

import asyncio
import sys

from saq import Queue, Worker

from _clock import Clock

clock = Clock(int(sys.argv[2]))
done = asyncio.Event()


async def noop(ctx: dict) -> None:
    if clock.tick():
        done.set()


async def main() -> None:
    queue = Queue.from_url(sys.argv[1])
    for _ in range(clock.n):
        await queue.enqueue("noop")
    worker = Worker(queue, functions=[noop], concurrency=100)
    task = asyncio.create_task(worker.start())
    await asyncio.wait_for(done.wait(), 600)
    await worker.stop()
    task.cancel()
    clock.report("saq")


asyncio.run(main())
