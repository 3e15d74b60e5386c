"""Must fail ``mypy --strict``, once per marked line: calls that do not match the
function's signature."""

from __future__ import annotations

import redis.asyncio as aioredis

from leaseq import JobContext, Queue, task

queue = Queue(aioredis.Redis(), "images")


@task(queue)
async def resize(ctx: JobContext, image_id: int, *, width: int) -> dict[str, int]:
    return {"image": image_id, "width": width}


async def produce() -> None:
    await resize.enqueue("seven", width=128)  # error: wrong type
    await resize.enqueue(7)  # error: missing width
    await resize.enqueue(7, width=128, height=5)  # error: unknown keyword
    resize.call(7, 128)  # error: width is keyword-only
    run = await resize.enqueue(7, width=128)
    wrong: str = await run.wait()  # error: the result is a dict
    del wrong
