"""Must pass ``mypy --strict``: typed-task calls that match the function's signature."""

from __future__ import annotations

import redis.asyncio as aioredis

from leaseq import JobContext, Queue, Worker, task

queue = Queue(aioredis.Redis(), "images")


@task(queue, timeout=30)
async def resize(ctx: JobContext, image_id: int, *, width: int) -> dict[str, int]:
    return {"image": image_id, "width": width}


async def produce() -> int:
    run = await resize.enqueue(7, width=128)
    result: dict[str, int] = await run.wait(timeout=10)
    many = await resize.enqueue_many([resize.call(i, width=64) for i in range(3)])
    results: list[dict[str, int]] = await resize.map([resize.call(1, width=32)])
    worker = Worker(queue, {resize.name: resize})
    del worker
    return result["width"] + len(many) + len(results)
