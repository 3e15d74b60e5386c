"""taskiq-redis: ``python taskiq_adapter.py MODE URL N [CONCURRENCY]`` (the peers'
virtualenv; see ``_clock.py`` for the modes). CONCURRENCY is the receiver's
``max_async_tasks`` (default 100). ``ListQueueBroker`` pops with ``BRPOP``: no acks."""

from __future__ import annotations

import asyncio

from taskiq.api import run_receiver_task
from taskiq_redis import ListQueueBroker

from _clock import produce, ready, start

args = start()
clock = args.clock()
done = asyncio.Event()
broker = ListQueueBroker(args.url)


@broker.task
async def noop(stamp: int) -> None:
    if clock.tick(stamp):
        done.set()


async def main() -> None:
    await broker.startup()
    if args.mode == "produce":
        await produce(lambda stamp: noop.kiq(stamp), args.n)
        await broker.shutdown()
        return
    if args.mode == "drain":
        for offset in range(0, args.n, 100):
            await asyncio.gather(*[noop.kiq(0) for _ in range(min(100, args.n - offset))])
        ready()
        clock.go()
    options = {} if args.concurrency is None else {"max_async_tasks": args.concurrency}
    task = asyncio.ensure_future(run_receiver_task(broker, **options))
    await done.wait()
    clock.report("taskiq", concurrency=args.concurrency or 100)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await broker.shutdown()


asyncio.run(main())
