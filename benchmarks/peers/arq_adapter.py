"""arq: ``python arq_adapter.py MODE URL N [CONCURRENCY]`` (the peers' virtualenv; see
``_clock.py`` for the modes). CONCURRENCY is arq's ``max_jobs`` (default 10); a drain runs
the worker in burst mode."""

from __future__ import annotations

import asyncio
from typing import Any

from arq import create_pool
from arq.connections import RedisSettings
from arq.worker import Worker

from _clock import produce, ready, start

args = start()
clock = args.clock()
done = asyncio.Event()


async def noop(ctx: dict[str, Any], stamp: int) -> None:
    if clock.tick(stamp):
        done.set()


async def main() -> None:
    settings = RedisSettings.from_dsn(args.url)
    pool = await create_pool(settings)
    if args.mode == "produce":
        await produce(lambda stamp: pool.enqueue_job("noop", stamp), args.n)
        await pool.aclose()
        return
    options = {} if args.concurrency is None else {"max_jobs": args.concurrency}
    worker = Worker(functions=[noop], redis_settings=settings, handle_signals=False,
                    burst=args.mode == "drain", **options)
    if args.mode == "drain":
        for offset in range(0, args.n, 100):
            await asyncio.gather(*[pool.enqueue_job("noop", 0)
                                   for _ in range(min(100, args.n - offset))])
        ready()
        clock.go()
        await worker.async_run()
    else:
        task = asyncio.ensure_future(worker.async_run())
        await done.wait()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    clock.report("arq", concurrency=worker.max_jobs)
    await worker.close()
    await pool.aclose()


asyncio.run(main())
