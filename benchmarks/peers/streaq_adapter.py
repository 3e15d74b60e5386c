"""streaq: ``python streaq_adapter.py MODE URL N [CONCURRENCY]`` (the second peers'
virtualenv; see ``_clock.py`` for the modes). CONCURRENCY is the worker's ``concurrency``
(default 16). The worker object is also the client that enqueues, as streaq has it; it
stops the way streaq's own command does, on SIGINT."""

from __future__ import annotations

import os
import signal

import anyio
from streaq import Worker

from _clock import produce, ready, start

args = start()
clock = args.clock()
done = anyio.Event()
options = {} if args.concurrency is None else {"concurrency": args.concurrency}
worker = Worker(redis_url=args.url, queue_name="bench", **options)


@worker.task
async def noop(stamp: int) -> None:
    if clock.tick(stamp):
        done.set()


async def main() -> None:
    async with worker:
        if args.mode == "produce":
            await produce(lambda stamp: noop.enqueue(stamp), args.n)
            return
        if args.mode == "drain":
            for offset in range(0, args.n, 1000):
                await worker.enqueue_many([noop.enqueue(0)
                                           for _ in range(min(1000, args.n - offset))])
            ready()
            clock.go()
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.run_async)
        await done.wait()
        clock.report("streaq", concurrency=worker.concurrency)
        os.kill(os.getpid(), signal.SIGINT)  # streaq's graceful stop


anyio.run(main)
