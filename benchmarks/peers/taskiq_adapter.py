"""taskiq-redis: ``python taskiq_adapter.py URL N`` (run in the peers' virtualenv)."""

from __future__ import annotations

import asyncio
import sys

from taskiq.api import run_receiver_task
from taskiq_redis import ListQueueBroker

from _clock import Clock

clock = Clock(int(sys.argv[2]))
done = asyncio.Event()
broker = ListQueueBroker(sys.argv[1])


@broker.task
async def noop() -> None:
    if clock.tick():
        done.set()


async def main() -> None:
    await broker.startup()
    for _ in range(clock.n):
        await noop.kiq()
    task = asyncio.create_task(run_receiver_task(broker, max_async_tasks=100))
    await asyncio.wait_for(done.wait(), 600)
    task.cancel()
    clock.report("taskiq")


asyncio.run(main())
