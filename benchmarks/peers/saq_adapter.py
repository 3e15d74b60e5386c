"""SAQ: ``python saq_adapter.py MODE URL N [CONCURRENCY]`` (the peers' virtualenv; see
``_clock.py`` for the modes). CONCURRENCY is SAQ's ``concurrency`` (default 10)."""

from __future__ import annotations

import asyncio
from typing import Any

from saq import Queue, Worker

from _clock import produce, ready, start

args = start()
clock = args.clock()
done = asyncio.Event()


async def noop(ctx: dict[str, Any], *, stamp: int) -> None:
    if clock.tick(stamp):
        done.set()


async def main() -> None:
    queue = Queue.from_url(args.url)
    await queue.connect()
    if args.mode == "produce":
        await produce(lambda stamp: queue.enqueue("noop", stamp=stamp), args.n)
        await queue.disconnect()
        return
    if args.mode == "drain":
        for offset in range(0, args.n, 100):
            await asyncio.gather(*[queue.enqueue("noop", stamp=0)
                                   for _ in range(min(100, args.n - offset))])
        ready()
        clock.go()
    options = {} if args.concurrency is None else {"concurrency": args.concurrency}
    worker = Worker(queue, functions=[noop], **options)
    task = asyncio.ensure_future(worker.start())
    await done.wait()
    clock.report("saq", concurrency=worker.concurrency)
    await worker.stop()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await queue.disconnect()


asyncio.run(main())
