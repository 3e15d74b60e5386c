"""Example: a worker embedded in an async service, next to the service's own tasks.

    python examples/service.py --redis redis://localhost:6379/0

The service owns its signals: on SIGTERM/SIGINT it stops its own loop and asks the worker
to stop gracefully (running jobs finish, the rest are released), then exits.
"""

from __future__ import annotations

import argparse
import os
import signal

import anyio
import redis.asyncio as aioredis

from leaseq import JobContext, Queue, Worker


async def resize(ctx: JobContext, payload: dict[str, int]) -> dict[str, int]:
    ctx.log.info("resizing", width=payload["width"])
    await anyio.sleep(0.01)
    return {"width": payload["width"] // 2}


async def report_to_monitoring(q: Queue) -> None:
    """Stands for whatever else the service does."""
    while True:
        stats = await q.stats()
        await anyio.sleep(5 if stats.todos else 10)


async def main(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    queue = Queue(client, "images")
    worker = Worker(queue, {"resize": resize}, concurrency=20)
    async with anyio.create_task_group() as tg:
        tg.start_soon(report_to_monitoring, queue)
        await tg.start(lambda task_status: worker.run(handle_signals=False,
                                                      task_status=task_status))
        print("service ready", flush=True)
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for _ in signals:
                worker.stop()  # graceful: returns at once, run() ends when drained
                break
        tg.cancel_scope.cancel()
    await client.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--redis", default=os.environ.get("LEASEQ_REDIS_URL",
                                                          "redis://localhost:6379/0"))
    anyio.run(main, parser.parse_args().redis)
