"""arq: ``python arq_adapter.py HOST PORT N`` (run in the peers' virtualenv)."""

from __future__ import annotations

import asyncio
import sys

from arq import create_pool
from arq.connections import RedisSettings
from arq.worker import Worker

from _clock import Clock

clock = Clock(int(sys.argv[3]))


async def noop(ctx: dict) -> None:
    clock.tick()


async def main() -> None:
    settings = RedisSettings(host=sys.argv[1], port=int(sys.argv[2]))
    pool = await create_pool(settings)
    for _ in range(clock.n):
        await pool.enqueue_job("noop")
    worker = Worker(functions=[noop], redis_settings=settings, burst=True, max_jobs=100,
                    handle_signals=False, keep_result=60)
    await worker.async_run()
    await worker.close()
    clock.report("arq")


asyncio.run(main())
