"""Example: a FastAPI app with a leaseq worker in its lifespan, sharing its Redis client.

    LEASEQ_REDIS_URL=redis://localhost:6379/0 uvicorn examples.fastapi_app:app

``POST /thumbnails`` enqueues a typed task and answers with the job id;
``GET /thumbnails/{job_id}`` waits (up to ``wait`` seconds) for its result; ``/healthz``
says whether Redis answers. On SIGTERM uvicorn runs the lifespan's exit: the worker stops
claiming, lets running jobs finish (``GRACE`` seconds), releases the rest to the queue,
and only then does the app close its Redis client.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import redis.asyncio as aioredis
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

from leaseq import JobContext, JobDead, JobNotFound, Queue, WaitTimeout, Worker, task

GRACE = float(os.environ.get("THUMBNAIL_GRACE", "10"))
redis = aioredis.Redis.from_url(os.environ.get("LEASEQ_REDIS_URL", "redis://localhost:6379/0"))
queue = Queue(redis, "thumbnails")


@task(queue, timeout=60)
async def thumbnail(ctx: JobContext, image_id: int, *, width: int) -> dict[str, int]:
    """Stands for the real work (ctx.state holds what the app's lifespan shared)."""
    await anyio.sleep(float(os.environ.get("THUMBNAIL_SECONDS", "0.05")))
    return {"image_id": image_id, "width": width, "made_by": ctx.state["pid"]}


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    worker = Worker(queue, {thumbnail.name: thumbnail}, concurrency=8,
                    grace_period=GRACE, lifespan=_worker_state)
    async with anyio.create_task_group() as tg:
        # uvicorn owns the signals; the worker is stopped from the app's shutdown.
        await tg.start(lambda task_status: worker.run(handle_signals=False,
                                                      task_status=task_status))
        yield
        worker.stop()  # graceful; the task group waits for run() to drain
    await redis.aclose()


@asynccontextmanager
async def _worker_state(worker: Worker) -> AsyncIterator[dict[str, Any]]:
    yield {"pid": os.getpid()}


app = FastAPI(title="thumbnails", lifespan=lifespan)


class ThumbnailRequest(BaseModel):
    image_id: int
    width: int


@app.post("/thumbnails", status_code=202)
async def make_thumbnail(request: ThumbnailRequest) -> dict[str, str]:
    run = await thumbnail.enqueue(request.image_id, width=request.width)
    return {"job_id": run.job_id}


@app.get("/thumbnails/{job_id}")
async def get_thumbnail(job_id: str, wait: float = 5.0) -> dict[str, Any]:
    try:
        return {"job_id": job_id, "result": await queue.wait(job_id, timeout=wait)}
    except WaitTimeout:
        raise HTTPException(status_code=202, detail="not done yet") from None
    except JobNotFound:
        raise HTTPException(status_code=404, detail="no such job") from None
    except JobDead as exc:
        raise HTTPException(status_code=409, detail=str(exc)) from None


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    await redis.ping()
    return {"status": "ok"}
